package errqueue

// Reset makes t ready for another send.
func (t *Tracker) Reset() {
	*t = Tracker{spans: t.spans[:0], scratch: t.scratch[:0]}
}
