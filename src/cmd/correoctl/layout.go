package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"correo/src/mailbox"
	"correo/src/usersample"
)

func runLayoutReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("layout report")
	users := fs.String("users", "", "file of user names: one per line, or passwd format (- for stdin)")
	strict := fs.Bool("strict", false, "fail when any line holds an invalid user name")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *users == "" {
		return fmt.Errorf("%w: -users FILE is required", errUsage)
	}
	var r io.Reader = os.Stdin
	if *users != "-" {
		f, err := os.Open(*users)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	names, bad, err := mailbox.ReadNames(r)
	if err != nil {
		return fmt.Errorf("reading %s: %w", *users, err)
	}
	for _, b := range bad {
		fmt.Fprintf(stderr, "%s: %v\n", *users, b)
	}
	if *strict && len(bad) > 0 {
		return fmt.Errorf("%d invalid lines in %s", len(bad), *users)
	}
	if len(names) == 0 {
		return fmt.Errorf("no valid user names in %s", *users)
	}
	return mailbox.WriteReport(stdout, mailbox.LayoutReport(names, mailbox.Schemes()))
}

func runLayoutSample(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("layout sample")
	n := fs.Int("n", 100000, "number of names")
	seed := fs.Int64("seed", 1, "random seed; the same seed gives the same names")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n < 1 {
		return fmt.Errorf("%w: -n must be at least 1", errUsage)
	}
	w := bufio.NewWriter(stdout)
	for _, name := range usersample.Generate(*n, *seed) {
		fmt.Fprintln(w, name)
	}
	return w.Flush()
}
