package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newOverlayCmd is a placeholder until its package lands.
func newOverlayCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "overlay",
		Short:  "not built yet",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("overlay: not built yet")
		},
	}
}
