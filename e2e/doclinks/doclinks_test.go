// Package doclinks checks that the documentation's relative links resolve:
// every link in README.md, docs/*.md and bench/*.md names a file that exists
// and, when it has a #fragment, a heading of that Markdown file. The README
// points into docs/ and docs/ points back; a section renamed or moved on one
// side would otherwise break the other silently. External links are not
// fetched: tests reach only loopback.
package doclinks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"cryptopulse/tools/devstack"
)

// TestDocLinks fails naming every broken link of the repository's documents.
func TestDocLinks(t *testing.T) {
	root, err := devstack.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	for _, pattern := range []string{"docs/*.md", "bench/*.md"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			rel, err := filepath.Rel(root, f)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, rel)
		}
	}
	if len(files) < 5 {
		t.Fatalf("found only %v: the documents moved, update this test", files)
	}
	links := 0
	for _, f := range files {
		n, broken, err := checkFile(root, f)
		if err != nil {
			t.Fatal(err)
		}
		links += n
		for _, b := range broken {
			t.Error(b)
		}
	}
	t.Logf("%d relative links in %d files", links, len(files))
}

// TestBrokenLinksAreReported runs the checker on a tree with known faults, so
// a checker that found nothing wrong anywhere would fail here.
func TestBrokenLinksAreReported(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/a.md", "# A\n\n## Client addresses and `TRUSTED_PROXIES`\n\n## Notes\n\n## Notes\n\n```\n# not a heading\n```\n")
	write("README.md", strings.Join([]string{
		"# Title",
		"[ok](docs/a.md) [ok](docs/a.md#client-addresses-and-trusted_proxies) [ok](docs/a.md#notes-1)",
		"[ok](#title) [ok](https://example.com/x.md#nowhere) <http://localhost:3000/docs>",
		"`[not a link](nowhere.md)`",
		"[missing file](docs/b.md) [missing anchor](docs/a.md#b) [code is no heading](docs/a.md#not-a-heading)",
		"![missing image](docs/x.png) [missing here](#nowhere)",
		"```",
		"[inside a code block](nowhere.md)",
		"```",
	}, "\n"))

	n, broken, err := checkFile(root, "README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"README.md:5: docs/b.md: no such file",
		"README.md:5: docs/a.md#b: no heading with that anchor in docs/a.md",
		"README.md:5: docs/a.md#not-a-heading: no heading with that anchor in docs/a.md",
		"README.md:6: docs/x.png: no such file",
		"README.md:6: #nowhere: no heading with that anchor in README.md",
	}
	if !slices.Equal(broken, want) {
		t.Errorf("broken links:\n got %q\nwant %q", broken, want)
	}
	if n != 9 {
		t.Errorf("checked %d relative links, want 9", n)
	}
}

func TestAnchor(t *testing.T) {
	for h, want := range map[string]string{
		"Many coins in one request":                     "many-coins-in-one-request",
		"The API in detail":                             "the-api-in-detail",
		"**Client addresses and `TRUSTED_PROXIES`.**":   "client-addresses-and-trusted_proxies",
		"Upstream budget, spent evenly (GCRA)":          "upstream-budget-spent-evenly-gcra",
		"[Linked](other.md) heading":                    "linked-heading",
		"`GET /api/v3/simple/price`":                    "get-apiv3simpleprice",
		"Failure behaviour: what a client sees — table": "failure-behaviour-what-a-client-sees--table",
	} {
		if got := anchor(h); got != want {
			t.Errorf("anchor(%q) = %q, want %q", h, got, want)
		}
	}
}

var (
	// fence opens or closes a fenced code block.
	fence = regexp.MustCompile("^\\s*(```|~~~)")
	// heading is an ATX heading; its text is group 2.
	heading = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
	// codeSpan is inline code, whose brackets are not links.
	codeSpan = regexp.MustCompile("`[^`]*`")
	// link is an inline link or image; its target is group 1 (a title
	// after the target is allowed and ignored).
	link = regexp.MustCompile(`!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+"[^"]*")?\s*\)`)
	// scheme marks an absolute URL, which is not checked.
	scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
	// inlineLink is a link inside a heading, which renders as its text.
	inlineLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// checkFile returns how many relative links the document rel (a path under
// root) holds and one message per link that does not resolve.
func checkFile(root, rel string) (int, []string, error) {
	text, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return 0, nil, err
	}
	anchors := map[string][]string{} // per document, loaded once
	n := 0
	var broken []string
	inFence := false
	for i, line := range strings.Split(string(text), "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range link.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
			target := m[1]
			if scheme.MatchString(target) {
				continue
			}
			n++
			if msg := resolve(root, rel, target, anchors); msg != "" {
				broken = append(broken, fmt.Sprintf("%s:%d: %s: %s", rel, i+1, target, msg))
			}
		}
	}
	return n, broken, nil
}

// resolve returns why target, linked from the document from, does not
// resolve, or "" when it does.
func resolve(root, from, target string, anchors map[string][]string) string {
	path, frag, _ := strings.Cut(target, "#")
	doc := from
	if path != "" {
		doc = filepath.Join(filepath.Dir(from), filepath.FromSlash(path))
		if doc == ".." || strings.HasPrefix(doc, ".."+string(filepath.Separator)) {
			return "points outside the repository"
		}
		if _, err := os.Stat(filepath.Join(root, doc)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "no such file"
			}
			return err.Error()
		}
	}
	if frag == "" {
		return ""
	}
	if !strings.HasSuffix(doc, ".md") {
		return "an anchor into a file that is not Markdown"
	}
	list, ok := anchors[doc]
	if !ok {
		text, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			return err.Error()
		}
		list = headingAnchors(string(text))
		anchors[doc] = list
	}
	if !slices.Contains(list, frag) {
		return "no heading with that anchor in " + filepath.ToSlash(doc)
	}
	return ""
}

// headingAnchors lists the anchors GitHub gives a document's headings, a
// repeated heading numbered -1, -2, ... as GitHub does.
func headingAnchors(text string) []string {
	var list []string
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		m := heading.FindStringSubmatch(line)
		if inFence || m == nil {
			continue
		}
		a := anchor(m[2])
		if k := seen[a]; k > 0 {
			list = append(list, fmt.Sprintf("%s-%d", a, k))
		} else {
			list = append(list, a)
		}
		seen[a]++
	}
	return list
}

// anchor is GitHub's anchor for a heading: the rendered text in lower case,
// punctuation other than '-' and '_' dropped, each space a '-'.
func anchor(h string) string {
	h = inlineLink.ReplaceAllString(h, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
