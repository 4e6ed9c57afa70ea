// Package image turns root file system trees into boot images: reproducible
// newc cpio archives, compressed with parallel gzip or zstd, that a Linux
// kernel unpacks as its initramfs.
//
// The pieces stand alone:
//
//   - Build, BuildDir and Scan stream a tree (any fs.FS, or a directory)
//     into any io.Writer with Options and a progress callback.
//   - Writer writes newc records with parent directories, owners, hard
//     links and alignment; the overlay package reuses it.
//   - ExtractTar and ImportArchive unpack tar archives and docker/podman
//     save archives (layers and whiteouts) safely into a directory.
//   - FindKernels locates the kernels of a tree.
//   - Store keeps named images as content-addressed files with an index that
//     is published atomically; Lookup serves it from memory.
package image
