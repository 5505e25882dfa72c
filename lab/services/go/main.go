// The lab's Go resource server: golang-jwt v5 with MicahParks/keyfunc v3. keyfunc's defaults (one
// unknown-kid refresh per 5 minutes) except the periodic refresh, every LAB_REFRESH_SECONDS instead of
// an hour: the service that stays stale after a second rotation. GET /api wants a Bearer token; each
// rejection is one AuthFailureEvent JSON line (reported_error = err.Error()), and a SampledToken line
// when the token's hash falls under the sampling rate. GET /fetches lists when the JWKS was fetched (a
// RoundTripper notes the time). Configured by environment.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

var (
	mu      sync.Mutex
	fetches = []string{}
)

func now() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

type recorder struct{}

func (recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		mu.Lock()
		fetches = append(fetches, now())
		mu.Unlock()
	}
	return resp, err
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func appendLine(path string, record any) {
	line, _ := json.Marshal(record)
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(line, '\n'))
}

func logRejection(token, message string, r *http.Request) {
	sum := sha256.Sum256([]byte(token))
	digest := hex.EncodeToString(sum[:])
	ts := now()
	mu.Lock()
	var fetched any
	if len(fetches) > 0 {
		fetched = fetches[len(fetches)-1]
	}
	mu.Unlock()
	appendLine(os.Getenv("LAB_EVENTS"), map[string]any{
		"event_id": uuid(), "ts": ts, "service": os.Getenv("LAB_SERVICE"), "reported_error": message,
		"service_jwks_fetched_at": fetched, "client_id": r.Header.Get("X-Client-Id"),
		"request_id": r.Header.Get("X-Request-Id"), "token_sha256": digest,
	})
	below, _ := strconv.Atoi(os.Getenv("LAB_SAMPLE_BELOW"))
	if int(sum[0]) < below {
		appendLine(os.Getenv("LAB_SAMPLES"), map[string]any{"token": token, "sampled_at": ts, "service": os.Getenv("LAB_SERVICE")})
	}
}

func reply(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func main() {
	refresh, _ := strconv.Atoi(os.Getenv("LAB_REFRESH_SECONDS"))
	kf, err := keyfunc.NewDefaultOverrideCtx(context.Background(), []string{os.Getenv("LAB_JWKS_URL")}, keyfunc.Override{
		Client:          &http.Client{Transport: recorder{}, Timeout: 10 * time.Second},
		RefreshInterval: time.Duration(refresh) * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyfunc:", err)
		os.Exit(2)
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(os.Getenv("LAB_ISSUER")),
		jwt.WithAudience(os.Getenv("LAB_AUDIENCE")), jwt.WithExpirationRequired(),
	)
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]string{"library": "golang-jwt+keyfunc"})
	})
	http.HandleFunc("/fetches", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		reply(w, 200, fetches)
	})
	http.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, err := parser.Parse(token, kf.Keyfunc); err != nil {
			logRejection(token, err.Error(), r)
			reply(w, 401, map[string]string{"error": "invalid_token"})
			return
		}
		reply(w, 200, map[string]bool{"ok": true})
	})
	_ = http.ListenAndServe("127.0.0.1:"+os.Getenv("LAB_PORT"), nil)
}
