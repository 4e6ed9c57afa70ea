package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newServeCmd is a placeholder until its package lands.
func newServeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "serve",
		Short:  "not built yet",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("serve: not built yet")
		},
	}
}
