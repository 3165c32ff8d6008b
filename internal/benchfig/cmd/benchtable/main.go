// Command benchtable prints the figures `make bench` gathered as one
// Markdown table:
//
//	benchtable FIGURES-FILE
package main

import (
	"fmt"
	"os"

	"correo/internal/benchfig"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtable FIGURES-FILE (the file make bench sets CORREO_BENCH_FIGURES to)")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	defer f.Close()
	figs, err := benchfig.Read(f)
	if err == nil && len(figs) == 0 {
		err = fmt.Errorf("%s holds no figures: did every benchmark fail?", os.Args[1])
	}
	if err == nil {
		err = benchfig.Table(os.Stdout, figs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}
