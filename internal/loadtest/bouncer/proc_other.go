//go:build !linux

package bouncer

import "syscall"

// procAttr: elsewhere PgBouncer is stopped by Stop only.
func procAttr(string) (*syscall.SysProcAttr, error) { return &syscall.SysProcAttr{}, nil }
