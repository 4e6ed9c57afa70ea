package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newInitCmd is a placeholder until its package lands.
func newInitCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "init",
		Short:  "not built yet",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("init: not built yet")
		},
	}
}
