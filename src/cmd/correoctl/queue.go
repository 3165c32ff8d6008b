package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"correo/src/queue"
)

// defaultQueueDir is where smtpd keeps its queue with the default -state
// (make dev: .dev/run/dev/smtpd/queue).
const defaultQueueDir = "/var/lib/correo/smtpd/queue"

func queueFlags(name string, args []string) (dir string, rest []string, err error) {
	fs := newFlags(name)
	d := fs.String("queue", defaultQueueDir, "smtpd's queue directory (<smtpd state>/queue)")
	if err := parseFlags(fs, args); err != nil {
		return "", nil, err
	}
	return *d, fs.Args(), nil
}

func runQueueList(args []string, stdout, stderr io.Writer) error {
	dir, _, err := queueFlags("queue list", args)
	if err != nil {
		return err
	}
	envs, bad, err := queue.List(dir)
	if err != nil {
		return err
	}
	for _, e := range bad {
		fmt.Fprintln(stderr, e)
	}
	tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tARRIVED\tSIZE\tFROM\tPENDING\tATTEMPTS\tNEXT\tLAST REPLY")
	for _, e := range envs {
		pending := e.Pending()
		last := ""
		for _, i := range pending {
			if r := e.Rcpts[i]; r.Code != 0 {
				last = fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
				break
			}
		}
		from := e.From
		if from == "" {
			from = "<>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d/%d\t%d\t%s\t%s\n", e.ID, e.Created.Format(time.DateTime), e.Size, from,
			len(pending), len(e.Rcpts), e.Attempts, e.Next.Format(time.DateTime), last)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d messages\n", len(envs))
	return nil
}

func runQueueShow(args []string, stdout, stderr io.Writer) error {
	dir, rest, err := queueFlags("queue show", args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: queue show [-queue DIR] ID", errUsage)
	}
	var hdr strings.Builder
	e, err := queue.Show(dir, rest[0], &hdr)
	if e == nil {
		return err
	}
	from := e.From
	if from == "" {
		from = "<>"
	}
	fmt.Fprintf(stdout, "id:       %s\ntrace:    %s\narrived:  %s\nfrom:     %s\nclient:   %s (%s)\nsize:     %d\nattempts: %d\nnext:     %s\n",
		e.ID, e.Trace, e.Created.Format(time.RFC3339), from, e.Client, e.Helo, e.Size, e.Attempts, e.Next.Format(time.RFC3339))
	for _, r := range e.Rcpts {
		fmt.Fprintf(stdout, "rcpt:     %s %s (%s)", r.Addr, r.State, r.Route)
		if r.Code != 0 {
			fmt.Fprintf(stdout, " last: %d %s %s", r.Code, r.Enhanced, r.Text)
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "\n%s", hdr.String())
	return err
}

func runQueueFlush(args []string, stdout, stderr io.Writer) error {
	dir, _, err := queueFlags("queue flush", args)
	if err != nil {
		return err
	}
	if err := queue.RequestFlush(dir); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "every queued message is due now")
	return nil
}

func runQueueDelete(args []string, stdout, stderr io.Writer) error {
	dir, rest, err := queueFlags("queue delete", args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: queue delete [-queue DIR] ID", errUsage)
	}
	if err := queue.RequestDelete(dir, rest[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted %s (kept in %s/trash)\n", rest[0], dir)
	return nil
}
