//go:build !linux

package probe

const notLinux = "not Linux"

// fresh reports nothing: io_uring, RWF_DONTCACHE and MSG_ZEROCOPY are Linux's.
func fresh() Features {
	return Features{
		IOURingReason:     notLinux,
		DontCacheReason:   notLinux,
		MsgZerocopyReason: notLinux,
		IOURingDisabled:   -1,
	}
}
