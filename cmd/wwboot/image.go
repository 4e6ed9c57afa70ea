package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newImageCmd is a placeholder until its package lands.
func newImageCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "image",
		Short:  "not built yet",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("image: not built yet")
		},
	}
}
