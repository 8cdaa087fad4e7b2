package peer

// SetJoinHook has s run f in each data connection's join, after it took the
// session's token and before it attaches the connection to the session.
func SetJoinHook(s *Server, f func()) { s.joinHook = f }
