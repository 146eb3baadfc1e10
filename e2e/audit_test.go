package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// auditEntry is what the tests read of one API server audit event.
type auditEntry struct {
	Stage     string `json:"stage"`
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	User      struct {
		Username string `json:"username"`
	} `json:"user"`
	ImpersonatedUser *struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// user is who made the request: the impersonated user if any (the tests'
// kubeconfigs impersonate ServiceAccounts).
func (e auditEntry) user() string {
	if e.ImpersonatedUser != nil {
		return e.ImpersonatedUser.Username
	}
	return e.User.Username
}

// byController reports whether our controller's ServiceAccount made the
// request.
func (e auditEntry) byController() bool {
	return strings.HasPrefix(e.user(), "system:serviceaccount:"+controllerNamespace+":")
}

// byGarbageCollector reports whether kube-controller-manager's garbage
// collector made the request (client-go ends its user agent with the
// controller's name).
func (e auditEntry) byGarbageCollector() bool {
	return strings.HasSuffix(e.UserAgent, "/generic-garbage-collector")
}

// readAudit reads the completed requests of an audit log.
func readAudit(t *testing.T, path string) []auditEntry {
	t.Helper()
	entries, err := (&auditTail{path: path}).next()
	if err != nil {
		t.Fatalf("reading the audit log: %v", err)
	}
	return entries
}

// auditTail reads an audit log from where it last stopped.
type auditTail struct {
	path   string
	offset int64
}

// next returns the completed requests logged since the last call. A log
// shorter than what was read before has been rotated away, which the test
// API server is configured never to do: that is an error, not zero
// requests.
func (a *auditTail) next() ([]auditEntry, error) {
	f, err := os.Open(a.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if info.Size() < a.offset {
		return nil, fmt.Errorf("audit log %s is %d bytes, shorter than the %d already read: it was rotated", a.path, info.Size(), a.offset)
	}
	if _, err := f.Seek(a.offset, io.SeekStart); err != nil {
		return nil, err
	}
	var out []auditEntry
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return out, nil // a partial last line is read next time
		}
		if err != nil {
			return nil, err
		}
		a.offset += int64(len(line))
		var e auditEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("audit log line %q: %w", line, err)
		}
		if e.Stage == "ResponseComplete" {
			out = append(out, e)
		}
	}
}
