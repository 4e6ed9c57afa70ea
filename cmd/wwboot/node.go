package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newNodeCmd is a placeholder until its package lands.
func newNodeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "node",
		Short:  "not built yet",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("node: not built yet")
		},
	}
}
