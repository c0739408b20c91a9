package stack_test

import (
	"errors"
	"go/build"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/tidingshq/tidings/"

// assemblers may import other services: this package wires processes,
// stacktest wires them for tests, bench drives whole processes, and the
// binary is all of them.
var assemblers = []string{"services/stack", "services/stacktest", "services/bench", "services/tidings", "services/tidings/cli"}

// TestLayering keeps the layers apart: a service (one gRPC service, or the
// worker) imports only pkg/ and the API, never another service, and pkg/
// imports no service. Test files may use services/stacktest.
func TestLayering(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	var checked int
	for _, top := range []string{"pkg", "services"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			pkg, err := build.ImportDir(path, 0)
			var none *build.NoGoError
			if errors.As(err, &none) {
				return nil
			}
			require.NoError(t, err, path)
			rel, err := filepath.Rel(root, path)
			require.NoError(t, err)
			rel = filepath.ToSlash(rel)
			if slices.Contains(assemblers, rel) {
				return nil
			}
			checked++
			for _, imp := range pkg.Imports {
				dep, ok := strings.CutPrefix(imp, module)
				if !ok || !strings.HasPrefix(dep, "services/") {
					continue
				}
				t.Errorf("%s imports %s: only %v may import services", rel, dep, assemblers)
			}
			return nil
		})
		require.NoError(t, err)
	}
	require.Greater(t, checked, 20, "the walk found the packages")
}
