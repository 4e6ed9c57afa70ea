package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/wwboot/wwboot/events"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
	"github.com/wwboot/wwboot/power"
	"github.com/wwboot/wwboot/provision"
)

// eventsConfigText documents wwboot.conf's events: key (appended to the
// default file, commented out).
const eventsConfigText = `# events: node state changes (up, booting, down, failed), boot stages and power actions go to
# hooks, and stream at /api/v1/events (Server-Sent Events). A program gets the event as JSON on
# stdin and as WWBOOT_EVENT_* variables; a webhook gets it POSTed as JSON, signed with
# X-Wwboot-Signature-256 (HMAC-SHA256 of the body) when a secret file is set.
# events:
#   concurrency: 8          # deliveries under way at once
#   keep: 1024              # events kept for streams that reconnect (Last-Event-ID)
#   hooks:
#     - program: /usr/local/sbin/on-node-event
#       args: []
#       types: [node.state] # empty: all of node.state, node.stage, node.power
#       timeout: 30s
#     - webhook: https://scheduler.example/wwboot
#       secret file: /etc/wwboot/webhook.secret
#       retries: 5
#       backoff: 1s
#       timeout: 2m
`

// eventsConfig is wwboot.conf's events: key.
type eventsConfig struct {
	// Concurrency bounds the hook deliveries under way.
	Concurrency int `yaml:"concurrency"`
	// Keep is how many events the server keeps for resuming streams.
	Keep int `yaml:"keep"`
	// Hooks receive the events.
	Hooks []hookConfig `yaml:"hooks"`
}

// hookConfig is one hook: a program or a webhook.
type hookConfig struct {
	Program    string        `yaml:"program"`
	Args       []string      `yaml:"args"`
	Webhook    string        `yaml:"webhook"`
	SecretFile string        `yaml:"secret file"`
	Types      []string      `yaml:"types"`
	Timeout    time.Duration `yaml:"timeout"`
	Retries    int           `yaml:"retries"`
	Backoff    time.Duration `yaml:"backoff"`
}

// validate checks the events: key; errors name the hook and the field.
func (c *eventsConfig) validate() error {
	if c.Concurrency < 0 || c.Concurrency > 1024 {
		return fmt.Errorf("events: concurrency: %d: use 1 to 1024 (0: %d)", c.Concurrency, events.DefaultConcurrency)
	}
	if c.Keep < 0 || c.Keep > 1<<20 {
		return fmt.Errorf("events: keep: %d: use 1 to %d (0: %d)", c.Keep, 1<<20, events.DefaultCapacity)
	}
	for i, h := range c.Hooks {
		where := fmt.Sprintf("events: hooks[%d]", i)
		switch {
		case (h.Program == "") == (h.Webhook == ""):
			return fmt.Errorf("%s: give either program: or webhook:", where)
		case h.Program != "" && !filepath.IsAbs(h.Program):
			return fmt.Errorf("%s: program %q: give an absolute path", where, h.Program)
		case h.Program != "" && (h.SecretFile != "" || h.Retries != 0 || h.Backoff != 0):
			return fmt.Errorf("%s: secret file, retries and backoff apply to webhooks only", where)
		case h.Webhook != "" && len(h.Args) > 0:
			return fmt.Errorf("%s: args apply to programs only", where)
		case h.Timeout < 0 || h.Backoff < 0:
			return fmt.Errorf("%s: timeout and backoff must not be negative", where)
		case h.Retries < 0 || h.Retries > 20:
			return fmt.Errorf("%s: retries: %d: use 0 to 20", where, h.Retries)
		}
		if h.Webhook != "" {
			u, err := url.Parse(h.Webhook)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%s: webhook %q: give an http:// or https:// URL", where, redactURL(h.Webhook))
			}
		}
		for _, t := range h.Types {
			if !slices.Contains(events.Types(), t) {
				return fmt.Errorf("%s: types: %q: use %v", where, t, events.Types())
			}
		}
	}
	return nil
}

// redactURL drops user info and query from u for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// hooks builds the dispatcher's hooks; secret files are read now.
func (c *eventsConfig) hooks() ([]events.HookConfig, error) {
	var out []events.HookConfig
	for i, h := range c.Hooks {
		hc := events.HookConfig{Types: h.Types, Timeout: h.Timeout}
		if h.Program != "" {
			hc.Name, hc.Hook = h.Program, &events.Program{Path: h.Program, Args: h.Args}
		} else {
			wh := &events.Webhook{URL: h.Webhook, Retries: h.Retries, Backoff: h.Backoff}
			if h.SecretFile != "" {
				b, err := os.ReadFile(h.SecretFile)
				if err != nil {
					return nil, fmt.Errorf("events: hooks[%d]: secret file: %w", i, err)
				}
				if wh.Secret = bytes.TrimSpace(b); len(wh.Secret) == 0 {
					return nil, fmt.Errorf("events: hooks[%d]: secret file %s is empty", i, h.SecretFile)
				}
			}
			hc.Name, hc.Hook = redactURL(h.Webhook), wh
		}
		out = append(out, hc)
	}
	return out, nil
}

// apiParts are what serve adds for events and the API.
type apiParts struct {
	bus  *events.Bus
	api  *provision.API
	disp *events.Dispatcher
}

// newAPIParts builds the event bus, the hook dispatcher and the API for
// serve. The API token comes from ROOT/admin.token (created when missing).
func (a *app) newAPIParts(cfg serveConfig, inv *nodedb.FileStore, images *image.Store, overlays *overlay.Renderer) (*apiParts, error) {
	tok, created, err := ensureAPIToken(a.path(apiTokenFile))
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if created {
		a.log.Info("created the API token", "file", a.path(apiTokenFile))
	}
	hooks, err := cfg.Events.hooks()
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	p := &apiParts{bus: events.NewBus(events.Options{Capacity: cfg.Events.Keep})}
	p.disp = &events.Dispatcher{Bus: p.bus, Hooks: hooks, Concurrency: cfg.Events.Concurrency, Log: a.log}
	var revoke func(context.Context, string) (bool, error)
	if cfg.AgentTLS {
		// The file is the truth: the server checks it on every TLS request.
		revoke = func(_ context.Context, node string) (bool, error) {
			r, err := provision.RevokeEnrollments(a.path("tls"), node)
			return len(r) > 0, err
		}
	}
	p.api, err = provision.NewAPI(provision.APIOptions{
		Revoke: revoke,
		Store:  inv, Images: images, Overlays: overlays, Events: p.bus,
		Auth: provision.TokenAuth{Token: tok}, Logger: a.log,
		Power: func(ctx context.Context, node, action string) (string, error) {
			act, err := power.ParseAction(action)
			if err != nil {
				return "", err
			}
			db, err := inv.Snapshot(ctx)
			if err != nil {
				return "", err
			}
			res := power.Run(ctx, powerTargets(db, []string{node}), act, power.Options{Events: p.bus, Log: a.log})
			if len(res) != 1 {
				return "", errors.New("power: no result")
			}
			return string(res[0].State), res[0].Err
		},
	})
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	return p, nil
}

// run starts what the parts do in the background until ctx ends: the hook
// dispatcher, and the end of the event streams when ctx ends (so that the
// server's drain does not wait for them). provision.Server runs the
// handler's WatchStates itself.
func (p *apiParts) run(ctx context.Context) {
	go func() { _ = p.disp.Run(ctx) }()
	go func() {
		<-ctx.Done()
		p.api.Close()
	}()
}
