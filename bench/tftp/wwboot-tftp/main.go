// Command wwboot-tftp serves one directory over TFTP with package
// github.com/wwboot/wwboot/tftp, for bench/tftp/run.sh. It uses the public
// API only and logs to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/wwboot/wwboot/tftp"
)

func main() {
	dir := flag.String("dir", ".", "directory to serve (as ROOT/tftp is served: symlinks stay inside)")
	addr := flag.String("addr", ":69", "UDP address to listen on")
	maxBlk := flag.Int("max-blksize", 0, "cap on the blksize option (0: interface MTU - 32)")
	verbose := flag.Bool("v", false, "log every transfer")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file until exit")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "wwboot-tftp:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	root, err := os.OpenRoot(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wwboot-tftp:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &tftp.Server{FS: root.FS(), Logger: log, MaxBlockSize: *maxBlk}
	if err := srv.ListenAndServe(ctx, *addr); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "wwboot-tftp:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
