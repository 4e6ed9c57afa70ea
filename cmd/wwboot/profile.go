package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newProfileCmd is a placeholder until its package lands.
func newProfileCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "profile",
		Short:  "not built yet",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("profile: not built yet")
		},
	}
}
