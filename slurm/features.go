package slurm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// ImageFeature is the prefix of the node feature that names an image: a job
// that asks for `--constraint=image=rocky9` gets nodes booted into the image
// rocky9. Slurm's node_features/helpers plugin accepts '=' in feature names
// (letters, digits, '_', '.', '=').
const ImageFeature = "image="

// featureName is what the helpers plugin accepts as a feature name
// (node_features_helpers.c, _is_feature_valid, Slurm 22.05).
var featureName = regexp.MustCompile(`^[A-Za-z_=][A-Za-z0-9_.=]*$`)

// ImageFromFeatures returns the image a features list asks for (Slurm's
// comma-separated list, as RebootProgram's second argument and
// SLURM_RESUME_FILE's features carry it; '&' separates AND-ed constraints
// there too), "" when it names none. Two different images are an error: a
// node boots one.
func ImageFromFeatures(features string) (string, error) {
	var image string
	for _, f := range strings.FieldsFunc(features, func(r rune) bool { return r == ',' || r == '&' }) {
		name, ok := strings.CutPrefix(strings.TrimSpace(f), ImageFeature)
		if !ok {
			continue
		}
		if name == "" || !featureName.MatchString(ImageFeature+name) {
			return "", fmt.Errorf("feature %q: an image name of letters, digits, '_' and '.'", f)
		}
		if image != "" && image != name {
			return "", fmt.Errorf("features %q ask for two images, %s and %s", features, image, name)
		}
		image = name
	}
	return image, nil
}

// HelpersOptions tune HelpersConf.
type HelpersOptions struct {
	// Helper is the program the node's slurmd runs for the features (the
	// script HelperScript returns, installed on the nodes).
	Helper string
	// BootTime is how long a node may take to boot into another image
	// (seconds; helpers.conf BootTime, default 300 in Slurm).
	BootTime int
	// AllowUserBoot lists the users who may switch images (empty: all).
	AllowUserBoot []string
}

// HelpersConf writes helpers.conf for Slurm's node_features/helpers plugin:
// one Feature=image=NAME line per image, all handled by opt.Helper, and a
// MutuallyExclusive line (a node runs one image). The file goes next to
// slurm.conf on the controller and on the nodes (helpers.conf(5)).
func HelpersConf(w io.Writer, images []string, opt HelpersOptions) error {
	if opt.Helper == "" || strings.ContainsAny(opt.Helper, " \t\n#") {
		return fmt.Errorf("helpers.conf: helper %q: an absolute path without spaces", opt.Helper)
	}
	if len(images) == 0 {
		return errors.New("helpers.conf: no images: import or build one first (wwboot image import)")
	}
	images = slices.Sorted(slices.Values(images))
	images = slices.Compact(images)
	var feats []string
	var b strings.Builder
	b.WriteString("# helpers.conf for Slurm's node_features/helpers plugin, written by wwboot slurm helpers-conf.\n")
	b.WriteString("# A job asking for --constraint=image=NAME gets nodes rebooted into that image by\n")
	b.WriteString("# RebootProgram (wwboot slurm reboot, SlurmctldParameters=reboot_from_controller).\n")
	for _, img := range images {
		f := ImageFeature + img
		if !featureName.MatchString(f) {
			return fmt.Errorf("helpers.conf: image %q cannot be a Slurm feature (letters, digits, '_' and '.'): rename it", img)
		}
		feats = append(feats, f)
		fmt.Fprintf(&b, "Feature=%s Helper=%s\n", f, opt.Helper)
	}
	if len(feats) > 1 {
		fmt.Fprintf(&b, "MutuallyExclusive=%s\n", strings.Join(feats, ","))
	}
	if opt.BootTime > 0 {
		fmt.Fprintf(&b, "BootTime=%d\n", opt.BootTime)
	}
	if len(opt.AllowUserBoot) > 0 {
		fmt.Fprintf(&b, "AllowUserBoot=%s\n", strings.Join(opt.AllowUserBoot, ","))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// HelperScript is the node-side helper helpers.conf names. The plugin runs
// it as slurmd does (root): without arguments it prints the node's active
// feature, image=NAME, from WWBOOT_IMAGE in nodeConf (the wwinit overlay's
// /etc/wwboot/node.conf, rendered for the image the node booted); with a
// feature it exits 0, because the switch itself is done on the controller by
// RebootProgram (wwboot slurm reboot), which owns the inventory.
func HelperScript(nodeConf string) string {
	return `#!/bin/sh
# Slurm node_features/helpers helper written by wwboot: reports the image this node booted.
if [ $# -eq 0 ]; then
	[ -r ` + nodeConf + ` ] || exit 0
	. ` + nodeConf + `
	[ -n "$WWBOOT_IMAGE" ] && echo "` + ImageFeature + `$WWBOOT_IMAGE"
fi
exit 0
`
}

// switchImages sets the image of every node of names that a features list
// (or a resume file's job) asks for. It returns per-node errors: nodes that
// could not be switched must not be powered into the old image.
func (p *Programs) switchImages(ctx context.Context, names []string, features string) map[string]error {
	image, err := ImageFromFeatures(features)
	if err != nil {
		return allFailed(names, err)
	}
	if image == "" {
		return nil
	}
	if p.SetImage == nil {
		return allFailed(names, fmt.Errorf("feature %s%s: this program cannot switch images (no SetImage)", ImageFeature, image))
	}
	if err := p.SetImage(ctx, names, image); err != nil {
		return allFailed(names, fmt.Errorf("switch to image %s: %w", image, err))
	}
	p.log().Info("slurm: nodes switched image", "nodes", strings.Join(names, ","), "image", image)
	return nil
}

func allFailed(names []string, err error) map[string]error {
	out := make(map[string]error, len(names))
	for _, n := range names {
		out[n] = err
	}
	return out
}
