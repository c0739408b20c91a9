package web

import "testing"

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for next, want := range map[string]string{
		"/people/bo": "/people/bo", "/records/crm.deal/1?x=1": "/records/crm.deal/1?x=1",
		"": "/", "//evil.example": "/", "/\\evil.example": "/", "/\t/evil.example": "/", "/ /evil.example": "/",
		"https://evil.example/": "/", "javascript:alert(1)": "/", "people": "/",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}
