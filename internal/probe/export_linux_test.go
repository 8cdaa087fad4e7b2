package probe

// Internals the external tests reach.

type (
	KernelVersion = kernelVersion
	SetupFacts    = setupFacts
	ProcStatus    = procStatus
)

var (
	SetupReason       = setupReason
	DontcacheReason   = dontcacheReason
	MsgZerocopyReason = msgZerocopyReason
	Privileged        = privileged
	ParseRelease      = parseRelease
	ParseStatus       = parseStatus
	ParseSysctlInt    = parseSysctlInt
)

// SendZCFlagsAccepted is sendZCFlagsAccepted, for the test that checks the
// REPORT_USAGE probe is conclusive.
var SendZCFlagsAccepted = sendZCFlagsAccepted
