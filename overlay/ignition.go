package overlay

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The Ignition storage document IgnitionJson writes, with the field names
// and order of Ignition's v3 config types (github.com/coreos/ignition
// config/v3_2/types), which Warewulf marshals.
type (
	ignitionConfig struct {
		Ignition ignitionVersion `json:"ignition"`
		Storage  ignitionStorage `json:"storage"`
	}
	ignitionVersion struct {
		Version string `json:"version"`
	}
	ignitionStorage struct {
		Disks       []ignitionDisk       `json:"disks,omitempty"`
		Filesystems []ignitionFilesystem `json:"filesystems,omitempty"`
	}
	ignitionDisk struct {
		Device     string              `json:"device"`
		Partitions []ignitionPartition `json:"partitions,omitempty"`
		WipeTable  *bool               `json:"wipeTable,omitempty"`
	}
	ignitionPartition struct {
		GUID               *string `json:"guid,omitempty"`
		Label              *string `json:"label,omitempty"`
		Number             int     `json:"number,omitempty"`
		Resize             *bool   `json:"resize,omitempty"`
		ShouldExist        *bool   `json:"shouldExist,omitempty"`
		SizeMiB            *int    `json:"sizeMiB,omitempty"`
		StartMiB           *int    `json:"startMiB,omitempty"`
		TypeGUID           *string `json:"typeGuid,omitempty"`
		WipePartitionEntry *bool   `json:"wipePartitionEntry,omitempty"`
	}
	ignitionFilesystem struct {
		Device         string   `json:"device"`
		Format         *string  `json:"format,omitempty"`
		Label          *string  `json:"label,omitempty"`
		MountOptions   []string `json:"mountOptions,omitempty"`
		Options        []string `json:"options,omitempty"`
		Path           *string  `json:"path,omitempty"`
		UUID           *string  `json:"uuid,omitempty"`
		WipeFilesystem *bool    `json:"wipeFilesystem,omitempty"`
	}
)

// IgnitionJSON returns the node's disks and file systems as an Ignition
// 3.1.0 config in JSON, as Warewulf's IgnitionJson template function
// (internal/pkg/overlay createIgnitionJson, node.GetIgnitionConfig) writes
// it: "" when the node has neither; the error's text when a number does
// not parse. Where Warewulf's output is wrong wwboot differs, on purpose:
// disks come sorted by device (Warewulf's follow map order), a partition's
// startMiB is its start_mib (Warewulf copies size_mib), and mount options
// are split at commas (Warewulf makes one option per character).
func IgnitionJSON(n *Node) string {
	if n == nil || len(n.Disks) == 0 && len(n.FileSystems) == 0 {
		return ""
	}
	conf := ignitionConfig{Ignition: ignitionVersion{Version: "3.1.0"}}
	for _, f := range n.FileSystemList() {
		fs := ignitionFilesystem{Device: f.Id, Path: ptr(f.Path), WipeFilesystem: ptr(f.WipeFileSystem)}
		if f.Format != "" {
			fs.Format = ptr(f.Format)
		}
		if f.Label != "" {
			fs.Label = ptr(f.Label)
		}
		if f.MountOptions != "" {
			for _, o := range strings.Split(f.MountOptions, ",") {
				if o = strings.TrimSpace(o); o != "" {
					fs.MountOptions = append(fs.MountOptions, o)
				}
			}
		}
		if len(f.Options) > 0 {
			fs.Options = append([]string(nil), f.Options...)
		}
		if f.Uuid != "" {
			fs.UUID = ptr(f.Uuid)
		}
		conf.Storage.Filesystems = append(conf.Storage.Filesystems, fs)
	}
	for _, d := range n.DiskList() {
		disk := ignitionDisk{Device: d.Id, WipeTable: ptr(d.WipeTable)}
		for _, p := range d.PartitionList() {
			part := ignitionPartition{Label: ptr(p.Id), ShouldExist: ptr(p.ShouldExist), WipePartitionEntry: ptr(p.WipePartitionEntry)}
			var err error
			if part.Number, err = atoiField(p.Number, "number", d.Id, p.Id); err != nil {
				return err.Error()
			}
			if p.Guid != "" {
				part.GUID = ptr(p.Guid)
			}
			if p.Resize {
				part.Resize = ptr(true)
			}
			if p.SizeMiB != "" {
				v, err := atoiField(p.SizeMiB, "size_mib", d.Id, p.Id)
				if err != nil {
					return err.Error()
				}
				part.SizeMiB = &v
			}
			if p.StartMiB != "" {
				v, err := atoiField(p.StartMiB, "start_mib", d.Id, p.Id)
				if err != nil {
					return err.Error()
				}
				part.StartMiB = &v
			}
			if p.TypeGuid != "" {
				part.TypeGUID = ptr(p.TypeGuid)
			}
			disk.Partitions = append(disk.Partitions, part)
		}
		// Warewulf's order: by number, then partitions with a size first,
		// then by size.
		sort.SliceStable(disk.Partitions, func(i, j int) bool {
			a, b := disk.Partitions[i], disk.Partitions[j]
			if a.Number != b.Number {
				return a.Number < b.Number
			}
			if (a.SizeMiB == nil) != (b.SizeMiB == nil) {
				return a.SizeMiB != nil
			}
			return a.SizeMiB != nil && *a.SizeMiB < *b.SizeMiB
		})
		conf.Storage.Disks = append(conf.Storage.Disks, disk)
	}
	out, err := json.Marshal(&conf)
	if err != nil {
		return err.Error()
	}
	return string(out)
}

func atoiField(s, field, disk, part string) (int, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("disk %s partition %s: %s %q is not a number", disk, part, field, s)
	}
	return v, nil
}

func ptr[T any](v T) *T { return &v }
