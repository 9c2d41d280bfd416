package containers

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestScratchImageMatchesDockerfile checks that the image the tests build
// (deploy/images/dynamo.Dockerfile) runs the binary the way the image users
// build (Dockerfile) does: the same user, volume, environment, ports,
// entry point and health check. Only how the files get in may differ. It
// needs no Docker.
func TestScratchImageMatchesDockerfile(t *testing.T) {
	root := repoRoot(t)
	users := finalStage(t, filepath.Join(root, "Dockerfile"))
	tests := finalStage(t, filepath.Join(root, "deploy", "images", "dynamo.Dockerfile"))
	if !slices.Equal(users, tests) {
		t.Errorf("the final stages differ:\nDockerfile:\n  %s\ndeploy/images/dynamo.Dockerfile:\n  %s",
			strings.Join(users, "\n  "), strings.Join(tests, "\n  "))
	}
}

// finalStage returns the instructions of a Dockerfile's last stage, but
// for its FROM and COPY lines, each on one line with its words separated
// by single spaces.
func finalStage(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var instructions []string
	var cont strings.Builder // an instruction continued with backslashes
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cont.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cont.WriteString(body + " ")
			continue
		}
		cont.WriteString(trimmed)
		instructions = append(instructions, strings.Join(strings.Fields(cont.String()), " "))
		cont.Reset()
	}
	var stage []string
	for _, in := range instructions {
		switch word, _, _ := strings.Cut(in, " "); strings.ToUpper(word) {
		case "FROM":
			stage = stage[:0]
		case "COPY":
		default:
			stage = append(stage, in)
		}
	}
	if len(stage) == 0 {
		t.Fatalf("%s: no instructions in its last stage", path)
	}
	return stage
}
