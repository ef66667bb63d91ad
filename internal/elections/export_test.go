package elections

// SetSealChunk makes s seal ballots n at a time (tests of the chunks).
func SetSealChunk(s *Service, n int) { s.sealChunk = n }
