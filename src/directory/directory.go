package directory

import "sync/atomic"

// Directory is the live user set a server answers from: an atomically
// swapped *Index. A reload builds a new Index off to the side and Swaps it
// in; queries running meanwhile finish on the Index they loaded, and no
// query ever waits for or fails because of the reload.
type Directory struct {
	p atomic.Pointer[Index]
}

var emptyIndex = &Index{c: emptyCompact}

// NewDirectory returns a Directory serving ix (an empty index if nil).
func NewDirectory(ix *Index) *Directory {
	d := &Directory{}
	d.Swap(ix)
	return d
}

// Current returns the index to answer from. Load it once per request and
// use that one for the whole request.
func (d *Directory) Current() *Index {
	if ix := d.p.Load(); ix != nil {
		return ix
	}
	return emptyIndex
}

// Swap publishes ix (an empty index if nil).
func (d *Directory) Swap(ix *Index) {
	if ix == nil {
		ix = emptyIndex
	}
	d.p.Store(ix)
}
