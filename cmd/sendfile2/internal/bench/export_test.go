package bench

// ParseMeminfo exports parseMeminfo to the tests.
var ParseMeminfo = parseMeminfo
