package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/power"
	"github.com/wwboot/wwboot/provision"
)

// remotePower applies act to the nodes args name through the API of the
// server at f.server (POST /api/v1/nodes/{name}/power), f.concurrency at
// once. NODES resolve against the server's inventory (GET /api/v1/nodes),
// as they do locally.
func (a *app) remotePower(ctx context.Context, act power.Action, args []string, f powerFlags) ([]power.Result, error) {
	c := a.newAPIClient(f.server, f.tokenFile, f.timeout+10*time.Second)
	var list provision.NodeList
	if _, err := c.do(ctx, http.MethodGet, "/api/v1/nodes", nil, &list, http.StatusOK); err != nil {
		return nil, fmt.Errorf("power: %w", err)
	}
	cfg := &nodedb.Config{Nodes: map[string]*nodedb.Record{}}
	for _, n := range list.Nodes {
		cfg.Nodes[n.ID] = &nodedb.Record{}
	}
	db, err := nodedb.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("power: the server's node names: %w", err)
	}
	names, err := selectNodes(db, args)
	if err != nil {
		return nil, err
	}
	n := f.concurrency
	if n <= 0 {
		n = power.DefaultConcurrency
	}
	res := make([]power.Result, len(names))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, name := range names {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := time.Now()
			var ans provision.PowerAnswer
			code, err := c.do(ctx, http.MethodPost, "/api/v1/nodes/"+name+"/power", provision.PowerRequest{Action: string(act)},
				&ans, http.StatusOK, http.StatusBadGateway)
			r := power.Result{Node: name, State: power.State(ans.State), Took: time.Since(start)}
			switch {
			case err != nil:
				r.Err = err
			case code == http.StatusBadGateway:
				r.Err = errors.New(ans.Error)
			}
			if r.Err != nil {
				r.State, r.Error = power.StateUnknown, r.Err.Error()
			}
			res[i] = r
		}()
	}
	wg.Wait()
	return res, nil
}
