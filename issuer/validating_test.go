package issuer

import (
	"testing"
	"time"
)

// The pending message is the request's status and an Event whenever it
// changes: while the CA validates, it may change once a minute, not on
// every pass.
func TestValidatingSinceChangesOncePerMinute(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, ""},
		{3 * time.Second, ""},
		{59 * time.Second, ""},
		{61 * time.Second, " (for over 1 min)"},
		{119 * time.Second, " (for over 1 min)"},
		{10*time.Minute + 30*time.Second, " (for over 10 min)"},
	} {
		if got := validatingSince(c.d); got != c.want {
			t.Errorf("validatingSince(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}
