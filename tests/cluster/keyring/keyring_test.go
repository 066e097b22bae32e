// Package keyring feeds the Secrets the operator writes to the kubelet's own credential keyring:
// the code (k8s.io/kubernetes/pkg/credentialprovider) that turns a Pod's imagePullSecrets into
// the credentials the kubelet hands to the container runtime for each image.
//
// tests/kubelet_keyring.rs builds the cases with the operator's own code and runs this test with
// KEYRING_CASES naming the file; run alone, it fails and says so.
package keyring

import (
	"encoding/json"
	"os"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/secrets"
)

// One Secret the operator built, and what the kubelet must make of it.
type testCase struct {
	Name   string    `json:"name"`
	Secret v1.Secret `json:"secret"`
	// The password the Secret was built with.
	Password string `json:"password"`
	// Images that must resolve to user AWS and Password.
	Resolves []string `json:"resolves"`
	// Images that must resolve to no credentials at all (pulled anonymously).
	Unresolved []string `json:"unresolved"`
}

func TestTheKubeletsKeyringResolvesWhatTheOperatorWrites(t *testing.T) {
	path := os.Getenv("KEYRING_CASES")
	if path == "" {
		t.Fatal("KEYRING_CASES must name the cases file that tests/kubelet_keyring.rs writes")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []testCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatalf("cases: %v", err)
	}
	if len(cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			// As the kubelet does for a Pod: its pull Secrets over the node's default keyring
			// (empty here: no credential provider plugin configured).
			keyring, err := secrets.MakeDockerKeyring([]v1.Secret{c.Secret}, &credentialprovider.BasicDockerKeyring{})
			if err != nil {
				t.Fatalf("the kubelet cannot read the Secret: %v", err)
			}
			for _, image := range c.Resolves {
				creds, found := keyring.Lookup(image)
				if !found || len(creds) != 1 {
					t.Errorf("%s: %d credentials (found %v), want exactly one", image, len(creds), found)
					continue
				}
				// Never print the password itself: only whether it matched.
				if creds[0].Username != "AWS" || creds[0].Password != c.Password {
					t.Errorf("%s: user %q and a password matching: %v; want AWS and the written one",
						image, creds[0].Username, creds[0].Password == c.Password)
				}
			}
			for _, image := range c.Unresolved {
				if creds, found := keyring.Lookup(image); found || len(creds) > 0 {
					t.Errorf("%s: %d credentials, want none", image, len(creds))
				}
			}
		})
	}
}
