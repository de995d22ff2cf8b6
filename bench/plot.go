package bench

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// cdfPoints caps the points of each CDF line: enough for a smooth curve,
// few enough for a small PNG.
const cdfPoints = 2000

// hasSamples reports whether any setup has RTT samples to plot.
func (r *Report) hasSamples() bool {
	for i := range r.Setups {
		if len(r.Setups[i].samples()) > 0 {
			return true
		}
	}
	return false
}

// samples pools the RTT samples of every repetition, sorted, in ns.
func (s *SetupResult) samples() []int64 {
	var all []int64
	for _, rep := range s.Reps {
		if rep.RR != nil {
			all = append(all, rep.RR.Samples...)
		}
	}
	slices.Sort(all)
	return all
}

// cdf returns points of the empirical CDF of sorted (ns), x in µs.
func cdf(sorted []int64) plotter.XYs {
	n := len(sorted)
	step := max(1, n/cdfPoints)
	var pts plotter.XYs
	for i := 0; i < n; i += step {
		pts = append(pts, plotter.XY{X: float64(sorted[i]) / 1e3, Y: float64(i+1) / float64(n)})
	}
	if last := float64(sorted[n-1]) / 1e3; pts[len(pts)-1].Y != 1 {
		pts = append(pts, plotter.XY{X: last, Y: 1})
	}
	return pts
}

// WritePlot draws the RTT CDF of every setup that has samples (all its
// repetitions pooled) as a PNG at path: RTT in µs on a log scale, the
// fraction of round trips at or below it from 0 to 1.
func (r *Report) WritePlot(path string) error {
	p := plot.New()
	p.Title.Text = "TCP request/response RTT, 64 bytes (CDF)"
	p.X.Label.Text = "RTT (µs, log scale)"
	p.Y.Label.Text = "fraction of round trips"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = logTicks{}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(10)
	p.Legend.YOffs = vg.Points(10)
	lines := 0
	for i := range r.Setups {
		s := &r.Setups[i]
		all := s.samples()
		if len(all) == 0 {
			continue
		}
		l, err := plotter.NewLine(cdf(all))
		if err != nil {
			return fmt.Errorf("plot %s: %w", s.Name, err)
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.Name, l)
		lines++
	}
	if lines == 0 {
		return errors.New("plot: no RTT samples")
	}
	if err := p.Save(9*vg.Inch, 5.5*vg.Inch, path); err != nil {
		return fmt.Errorf("write plot: %w", err)
	}
	return nil
}

// logTicks marks 1–9 × 10^k and labels 1, 2 and 5 × 10^k: on a narrow
// range plot.LogTicks would label one or two powers of ten only.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	if lo <= 0 || hi < lo {
		return ts
	}
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for m := 1; m < 10; m++ {
			v := float64(m) * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'f', -1, 64)
			}
			ts = append(ts, t)
		}
	}
	return ts
}
