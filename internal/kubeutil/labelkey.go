package kubeutil

import (
	"crypto/sha256"
	"encoding/hex"
)

// LabelKey is a label value that stands for an object's namespace and name,
// which together may be longer than a label value can be (63 characters).
func LabelKey(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	return hex.EncodeToString(sum[:8])
}
