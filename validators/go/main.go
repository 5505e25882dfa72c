// golang-jwt v5 runner, with MicahParks/keyfunc v3 fetching the harness's JWKS.
//
// Protocol (validators/README.md): argv is JWKS_URL ISSUER AUDIENCE ALGS; one ready line, then one
// JSON reply per JSON request line on stdin.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

type request struct {
	Case  string `json:"case"`
	Token string `json:"token"`
}

type reply struct {
	Case       string  `json:"case"`
	Accepted   bool    `json:"accepted"`
	ErrorClass *string `json:"error_class,omitempty"`
	Message    *string `json:"message,omitempty"`
	Logged     *string `json:"logged,omitempty"`
}

// moduleVersions reads the linked module versions from the binary's build info.
func moduleVersions() map[string]string {
	versions := map[string]string{}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			versions[dep.Path] = dep.Version
		}
	}
	return versions
}

func main() {
	url, issuer, audience, algs := os.Args[1], os.Args[2], os.Args[3], strings.Split(os.Args[4], ",")
	// RefreshInterval 1 s so the retired key drops out quickly; an unlimited RefreshUnknownKID so a kid
	// miss refetches at once (the default limiter allows one refresh per 5 minutes: see README).
	kf, err := keyfunc.NewDefaultOverrideCtx(context.Background(), []string{url}, keyfunc.Override{
		RefreshInterval:   time.Second,
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyfunc:", err)
		os.Exit(2)
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(algs), jwt.WithIssuer(issuer), jwt.WithAudience(audience),
		jwt.WithExpirationRequired(), jwt.WithLeeway(0),
	)
	versions := moduleVersions()
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(map[string]any{
		"ready": true, "library": "golang-jwt", "version": versions["github.com/golang-jwt/jwt/v5"],
		"helpers": map[string]string{
			"keyfunc/v3": versions["github.com/MicahParks/keyfunc/v3"], "jwkset": versions["github.com/MicahParks/jwkset"],
		},
	})
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		var req request
		if json.Unmarshal(scanner.Bytes(), &req) != nil {
			continue
		}
		rep := reply{Case: req.Case, Accepted: true}
		if _, err := parser.Parse(req.Token, kf.Keyfunc); err != nil {
			class, message := fmt.Sprintf("%T", err), err.Error()
			rep = reply{Case: req.Case, ErrorClass: &class, Message: &message, Logged: &message}
		}
		_ = out.Encode(rep)
	}
}
