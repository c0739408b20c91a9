package eventlog

import (
	"crypto/sha256"
	"encoding/hex"

	"google.golang.org/protobuf/proto"
)

// ContentHash is a short, stable hash of a message's content, for
// deterministic message ids.
func ContentHash(m proto.Message) string {
	data, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:12])
}
