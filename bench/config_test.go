package bench

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/rules"
)

func TestSetFastPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		on   bool
		want string
	}{
		{
			name: "replace",
			src:  "[engine]\nqueue = 0\n  fast_path = true   # comment\n\n[log]\nblocked = \"stdout\"\n",
			want: "[engine]\nqueue = 0\n  fast_path = false  # set by nfqguard bench\n\n[log]\nblocked = \"stdout\"\n",
		},
		{
			name: "replace, CRLF",
			src:  "[engine]\r\nfast_path=true\r\n",
			want: "[engine]\r\nfast_path = false  # set by nfqguard bench\r\n",
		},
		{
			name: "insert after header",
			src:  "[log]\nblocked = \"stdout\"\n\n[engine] # tuning\nqueue = 3\n\n[defaults]\nfast_path = true\n",
			want: "[log]\nblocked = \"stdout\"\n\n[engine] # tuning\nfast_path = false  # set by nfqguard bench\nqueue = 3\n\n[defaults]\nfast_path = true\n",
		},
		{
			name: "insert after last line",
			src:  "[engine]",
			on:   true,
			want: "[engine]\nfast_path = true  # set by nfqguard bench\n",
		},
		{
			name: "prepend section",
			src:  "# rules\n[defaults]\ningress = \"allow\"\n",
			want: "[engine]\nfast_path = false  # set by nfqguard bench\n\n# rules\n[defaults]\ningress = \"allow\"\n",
		},
		{
			name: "not fooled by other tables",
			src:  "[[container]]\nname = \"engine\"\n[engine.x]\nfast_path = true\n",
			want: "[engine]\nfast_path = false  # set by nfqguard bench\n\n[[container]]\nname = \"engine\"\n[engine.x]\nfast_path = true\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, setFastPath(tc.src, tc.on)); diff != "" {
				t.Errorf("setFastPath(%q, %t) mismatch (-want +got):\n%s", tc.src, tc.on, diff)
			}
		})
	}
}

// TestSetFastPathRepoConfig edits the shipped config both ways and checks
// the rule loader agrees.
func TestSetFastPathRepoConfig(t *testing.T) {
	src, err := os.ReadFile("../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		out := setFastPath(string(src), on)
		tbl, err := rules.Parse("edited.toml", []byte(out))
		if err != nil {
			t.Fatalf("fast_path=%t: edited config does not load: %v", on, err)
		}
		if tbl.Engine.FastPath != on {
			t.Errorf("fast_path=%t: loader reads %t", on, tbl.Engine.FastPath)
		}
	}
}
