package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/taproot-dev/taproot/unpacker"
)

func main() {
	out := flag.String("out", "/tmp/bench/prof-out", "")
	prof := flag.String("cpuprofile", "", "")
	flag.Parse()
	os.RemoveAll(*out)
	if *prof != "" {
		f, _ := os.Create(*prof)
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, b := range flag.Args() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(b)
			if err != nil {
				panic(err)
			}
			defer f.Close()
			t := time.Now()
			res, err := unpacker.UnpackLayer(context.Background(), f, filepath.Join(*out, fmt.Sprint(i)), unpacker.LayerSpec{}, unpacker.Options{SkipDevices: true})
			if err != nil {
				panic(err)
			}
			fmt.Println(i, time.Since(t), res.Entries, res.UncompressedBytes)
		}()
	}
	wg.Wait()
	fmt.Println("total", time.Since(start))
}
