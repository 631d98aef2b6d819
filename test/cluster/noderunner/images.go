package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// images.map: one entry per line, `<image glob> <entrypoint|-> [default args...]`; `*` in the
// glob matches any run of characters (including '/'); first match wins. The entrypoint plays the
// image's ENTRYPOINT, the default args its CMD. A container `command` whose first word's base name
// names a file in the entrypoint's directory runs that file (multi-binary images); any other
// command runs the host's binary of that name (sleep, sh, curl, ...).
type imageEntry struct {
	pattern    string
	entrypoint string
	args       []string
}

func loadImages(path string) ([]imageEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var res []imageEntry
	sc := bufio.NewScanner(f)
	ln := 0
	for sc.Scan() {
		ln++
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) < 2 {
			return nil, fmt.Errorf("%s:%d: want `<image glob> <entrypoint|-> [args...]`", path, ln)
		}
		res = append(res, imageEntry{pattern: fs[0], entrypoint: fs[1], args: fs[2:]})
	}
	return res, sc.Err()
}

func globMatch(pat, s string) bool {
	if pat == "" {
		return s == ""
	}
	if pat[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if globMatch(pat[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	return s != "" && pat[0] == s[0] && globMatch(pat[1:], s[1:])
}

func imageNames(image string) []string {
	names := []string{image}
	n := image
	for _, p := range []string{"docker.io/", "index.docker.io/"} {
		n = strings.TrimPrefix(n, p)
	}
	names = append(names, n, strings.TrimPrefix(n, "library/"))
	if !strings.Contains(image, ":") && !strings.Contains(image, "@") {
		for _, x := range append([]string(nil), names...) {
			names = append(names, x+":latest")
		}
	}
	return names
}

func (r *runner) resolveImage(image string) (*imageEntry, error) {
	entries, err := loadImages(r.cfg.imagesMap)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		for _, n := range imageNames(image) {
			if globMatch(e.pattern, n) {
				e := e
				return &e, nil
			}
		}
	}
	return nil, fmt.Errorf("image %q is not in the images map (%s)", image, r.cfg.imagesMap)
}

// resolveArgv applies Kubernetes' command/args rules to the mapped image and finds the binary.
func resolveArgv(e *imageEntry, command, args []string) ([]string, error) {
	var argv []string
	if len(command) > 0 {
		argv = append(append(argv, command...), args...)
	} else {
		if e.entrypoint != "-" {
			argv = append(argv, e.entrypoint)
		}
		if len(args) > 0 {
			argv = append(argv, args...)
		} else {
			argv = append(argv, e.args...)
		}
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command: the image map has no entrypoint and the container no command")
	}
	first := argv[0]
	base := filepath.Base(first)
	if e.entrypoint != "-" {
		if first == e.entrypoint {
			return argv, nil
		}
		cand := filepath.Join(filepath.Dir(e.entrypoint), base)
		if st, err := os.Stat(cand); err == nil && !st.IsDir() {
			argv[0] = cand
			return argv, nil
		}
	}
	if strings.Contains(first, "/") {
		if st, err := os.Stat(first); err == nil && !st.IsDir() {
			return argv, nil
		}
	}
	p, err := exec.LookPath(base)
	if err != nil {
		return nil, fmt.Errorf("executable %q not found (image entrypoint %s, host PATH)", first, e.entrypoint)
	}
	argv[0] = p
	return argv, nil
}
