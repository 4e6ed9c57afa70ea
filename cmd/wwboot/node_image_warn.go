package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/wwboot/wwboot/image"
)

// warnUnknownImage says when node|profile add|set --image names an image
// that is not imported: the edit stands (an image may be imported later, as
// wwctl allows), but nodes booting it would get no image until then.
func (a *app) warnUnknownImage(ctx context.Context, fs *pflag.FlagSet, name string) {
	if !fs.Changed("image") || name == "" {
		return
	}
	s, err := image.OpenStore(a.path("images"))
	if err != nil {
		return
	}
	if _, err := s.Lookup(ctx, name); errors.Is(err, image.ErrNotFound) {
		fmt.Fprintf(a.stderr, "wwboot: warning: image %q is not imported: nodes that boot it get no image until 'wwboot image import SRC %s' (see 'wwboot image list')\n", name, name)
	}
}
