package keyring

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"k8s.io/kubernetes/pkg/credentialprovider"
)

// The registry's only user, as ECR's: the password is the token.
const user = "AWS"

// checkPull pulls image's manifest, with the credentials the keyring gives it and nothing else,
// from a registry answering under image's own host name that takes only user AWS and password;
// then checks that the registry refuses the same pull without them.
func checkPull(t *testing.T, keyring credentialprovider.DockerKeyring, image, password string) {
	ref, err := name.ParseReference(image)
	if err != nil {
		t.Fatalf("%s: %v", image, err)
	}
	client := serveRegistry(t, ref.Context().RegistryStr(), password)
	seeded := seed(t, ref, password, client)

	got, err := pull(t, ref, keyringAuth(t, keyring, image), client)
	if err != nil {
		t.Fatalf("%s: pull with the keyring's credentials: %v", image, err)
	}
	if got != seeded {
		t.Errorf("%s: pulled manifest %s, want the seeded %s", image, got, seeded)
	}

	// Controls: the registry really requires the credentials, and checks the password.
	controls := []struct {
		what string
		auth authn.Authenticator
	}{
		{"no credentials", authn.Anonymous},
		{"a wrong password", authn.FromConfig(authn.AuthConfig{Username: user, Password: "not-" + password})},
	}
	for _, c := range controls {
		if _, err := pull(t, ref, c.auth, client); statusOf(err) != http.StatusUnauthorized {
			t.Errorf("%s: pull with %s: %v, want 401 Unauthorized", image, c.what, err)
		}
	}
}

// keyringAuth hands on what the keyring resolved for image, as the kubelet hands it to the
// container runtime: the keyring is the only source of the pull's credentials.
func keyringAuth(t *testing.T, keyring credentialprovider.DockerKeyring, image string) authn.Authenticator {
	t.Helper()
	creds, found := keyring.Lookup(image)
	if !found || len(creds) != 1 {
		t.Fatalf("%s: %d credentials (found %v), want exactly one", image, len(creds), found)
	}
	c := creds[0]
	return authn.FromConfig(authn.AuthConfig{
		Username:      c.Username,
		Password:      c.Password,
		Auth:          c.Auth,
		IdentityToken: c.IdentityToken,
		RegistryToken: c.RegistryToken,
	})
}

// pull fetches ref's manifest and returns its digest.
func pull(t *testing.T, ref name.Reference, auth authn.Authenticator, client http.RoundTripper) (v1.Hash, error) {
	t.Helper()
	desc, err := remote.Get(ref, remote.WithAuth(auth), remote.WithTransport(client), remote.WithContext(t.Context()))
	if err != nil {
		return v1.Hash{}, err
	}
	return desc.Digest, nil
}

// seed pushes a small random image to ref, as the registry's owner (with the password it
// takes), and returns its manifest's digest.
func seed(t *testing.T, ref name.Reference, password string, client http.RoundTripper) v1.Hash {
	t.Helper()
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	owner := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	if err := remote.Write(ref, img, remote.WithAuth(owner), remote.WithTransport(client), remote.WithContext(t.Context())); err != nil {
		t.Fatalf("seeding %s: %v", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest
}

// The HTTP status of a registry's refusal; 0 if err is none.
func statusOf(err error) int {
	var refusal *transport.Error
	if errors.As(err, &refusal) {
		return refusal.StatusCode
	}
	return 0
}

// serveRegistry starts an in-memory registry on 127.0.0.1 over TLS, with a certificate for host
// alone, that takes only Basic auth user AWS and password; it returns a client transport that
// reaches it under any host name (the test's own resolver: nothing else in the process changes)
// and trusts only its certificate, so that SNI and the host name check are the real ones.
func serveRegistry(t *testing.T, host, password string) http.RoundTripper {
	t.Helper()
	// The registry logs every request; the test's output has no use for them.
	quiet := registry.Logger(log.New(io.Discard, "", 0))
	server := httptest.NewUnstartedServer(requireBasicAuth(registry.New(quiet), host, password))
	server.TLS = &tls.Config{Certificates: []tls.Certificate{selfSignedCert(t, host)}}
	server.StartTLS()
	t.Cleanup(server.Close)

	roots := x509.NewCertPool()
	roots.AddCert(server.Certificate())
	addr := server.Listener.Addr().String()
	client := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
		// Proxy left nil: no proxy from the environment between the client and the registry.
	}
	t.Cleanup(client.CloseIdleConnections)
	return client
}

// requireBasicAuth lets through only requests for host with Basic auth user AWS and password,
// and challenges the rest as a registry does, so a client without them gets 401.
func requireBasicAuth(next http.Handler, host, password string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reached under the image's own host name, as a node reaches the real registry.
		if r.TLS == nil || r.TLS.ServerName != host || r.Host != host {
			http.Error(w, "not this registry", http.StatusMisdirectedRequest)
			return
		}
		u, p, ok := r.BasicAuth()
		if !ok || u != user || subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+host+`"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// selfSignedCert makes a certificate for host alone, signed by its own key: the client's only
// root, so it verifies the chain and the name as against a real registry.
func selfSignedCert(t *testing.T, host string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
