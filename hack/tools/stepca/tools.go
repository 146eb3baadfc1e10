//go:build tools

// Package tools pins a command-line tool that the build or the tests run.
package tools

import (
	_ "github.com/smallstep/certificates/cmd/step-ca"
)
