package uring

// More reports whether the request will produce another CQE after c
// (IORING_CQE_F_MORE). A zero-copy send sets it on its result CQE when a
// notification follows, also when the send failed.
func (c CQE) More() bool { return c.Flags&CQEFMore != 0 }

// Notif reports whether c is a zero-copy notification (IORING_CQE_F_NOTIF):
// the kernel no longer references the request's buffer.
func (c CQE) Notif() bool { return c.Flags&CQEFNotif != 0 }

// Final reports whether c is the last CQE of its request.
func (c CQE) Final() bool { return c.Notif() || !c.More() }

// Copied reports whether a notification says that the kernel copied some of
// the data instead of sending it from the buffer (IORING_NOTIF_USAGE_ZC_COPIED,
// reported only for sends with IORING_SEND_ZC_REPORT_USAGE, Linux 6.2+).
func (c CQE) Copied() bool { return c.Notif() && uint32(c.Res)&NotifUsageZCCopied != 0 }

// packUserData encodes a request's slot and generation in user_data. The
// generation is never zero, so user_data 0 never names a live request.
func packUserData(slot, gen uint32) uint64 { return uint64(gen)<<32 | uint64(slot) }

// unpackUserData is the inverse of packUserData.
func unpackUserData(ud uint64) (slot, gen uint32) { return uint32(ud), uint32(ud >> 32) }
