package stack

import "testing"

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:7401": true, "127.0.0.2:80": true, "[::1]:7401": true, "localhost:7401": true,
		"0.0.0.0:7401": false, ":7401": false, "10.0.0.5:7401": false, "[::]:7401": false, "example.com:80": false, "bad": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
