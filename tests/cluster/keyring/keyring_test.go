// Package keyring feeds the Secrets the operator writes to the kubelet's own credential keyring:
// the code (k8s.io/kubernetes/pkg/credentialprovider) that turns a Pod's imagePullSecrets into
// the credentials the kubelet hands to the container runtime for each image. Then it pulls the
// images a case names from a registry that takes only those credentials, with nothing but what
// the keyring returned, as the container runtime would.
//
// tests/kubelet_keyring.rs builds the cases with the operator's own code and runs this test with
// KEYRING_CASES naming the file; run alone, it fails and says so.
package keyring

import (
	"encoding/json"
	"os"
	"strconv"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/secrets"
)

// One Secret the operator built, and what the kubelet must make of it.
type testCase struct {
	Name   string    `json:"name"`
	Secret v1.Secret `json:"secret"`
	// Image -> the password it must resolve to, with user AWS: each registry host of the Secret
	// has its own token (public ECR's, or each private region's).
	Resolves map[string]string `json:"resolves"`
	// Images that must resolve to no credentials at all (pulled anonymously).
	Unresolved []string `json:"unresolved"`
	// Images of Resolves to really pull with the credentials the keyring returns.
	Pulls []string `json:"pulls"`
}

func TestTheKubeletsKeyringResolvesWhatTheOperatorWrites(t *testing.T) {
	cases := readCases(t)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			// As the kubelet does for a Pod: its pull Secrets over the node's default keyring
			// (empty here: no credential provider plugin configured).
			keyring, err := secrets.MakeDockerKeyring([]v1.Secret{c.Secret}, &credentialprovider.BasicDockerKeyring{})
			if err != nil {
				t.Fatalf("the kubelet cannot read the Secret: %v", err)
			}
			for image, password := range c.Resolves {
				checkResolves(t, keyring, image, password)
			}
			for _, image := range c.Unresolved {
				if creds, found := keyring.Lookup(image); found || len(creds) > 0 {
					t.Errorf("%s: %d credentials, want none", image, len(creds))
				}
			}
			for i, image := range c.Pulls {
				password, ok := c.Resolves[image]
				if !ok {
					t.Fatalf("pulls names %s, which resolves does not: no password to serve it with", image)
				}
				t.Run("pull-"+strconv.Itoa(i), func(t *testing.T) {
					checkPull(t, keyring, image, password)
				})
			}
		})
	}
}

// The cases file that KEYRING_CASES names.
func readCases(t *testing.T) []testCase {
	t.Helper()
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
	return cases
}

// The keyring gives image exactly one credential: user AWS and password.
func checkResolves(t *testing.T, keyring credentialprovider.DockerKeyring, image, password string) {
	t.Helper()
	creds, found := keyring.Lookup(image)
	if !found || len(creds) != 1 {
		t.Errorf("%s: %d credentials (found %v), want exactly one", image, len(creds), found)
		return
	}
	// Never print the password itself: only whether it matched.
	if creds[0].Username != "AWS" || creds[0].Password != password {
		t.Errorf("%s: user %q and a password matching: %v; want AWS and the written one",
			image, creds[0].Username, creds[0].Password == password)
	}
}
