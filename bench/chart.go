package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ratioBar is one bar of the chart: a measure divided by its baseline.
type ratioBar struct {
	// group heads the bars that share it; label names the bar.
	group, label string
	value        float64
	// decimals is how many the value is printed with.
	decimals int
}

// ratios collects the run's ratios against their baselines, in the
// table's order, leaving out what was not measured.
func (r *results) ratios() []ratioBar {
	var bars []ratioBar
	add := func(group, label string, value float64, decimals int) {
		if value > 0 && !math.IsInf(value, 0) && !math.IsNaN(value) {
			bars = append(bars, ratioBar{group: group, label: label, value: value, decimals: decimals})
		}
	}
	const edge = "edge chain ÷ bare, req/s (median of the rounds' own ratios)"
	if r.edge != nil {
		add(edge, "storage memory", r.edge.pairedRatio(), 2)
	}
	if r.redis != nil && r.redis.edge != nil {
		add(edge, "storage redis", r.redis.edge.pairedRatio(), 2)
	}
	const accounts = "accounts"
	if a := r.accounts; a != nil && a.edge != nil {
		add(accounts, fmt.Sprintf("chain req/s, %s dynamic ÷ 1 static", thousands(a.created)), a.edge.pairedRatio(), 2)
	}
	if lm := r.limiterMemory; lm != nil {
		add(accounts, fmt.Sprintf("limiter heap/account ÷ map entry (%s)", thousands(lm.accounts)), lm.ratio(), 2)
	}
	if f := r.fair; f != nil && len(f.oneAccount) > 0 {
		const fair = "fair queues"
		add(fair, fmt.Sprintf("tasks/s, %s accounts ÷ 1", thousands(fairAccounts)), median(f.manyAccounts)/median(f.oneAccount), 2)
		if len(f.idle) > 0 {
			add(fair, "light task p50, behind a backlog ÷ idle", float64(quantile(f.behind, 0.5))/float64(quantile(f.idle, 0.5)), 2)
		}
	}
	const creations = "creations/s ÷ bare (median of the rounds' own ratios)"
	if r.createMemory != nil {
		add(creations, "storage memory", r.createMemory.pairedRatio(), 2)
	}
	if r.createBolt != nil {
		add(creations, "storage bolt", r.createBolt.pairedRatio(), 2)
	}
	if r.redis != nil && r.redis.create != nil {
		add(creations, "storage redis", r.redis.create.pairedRatio(), 2)
	}
	const accuracy = "rate-limit accuracy, admitted ÷ expected"
	if rd := r.redis; rd != nil {
		for _, a := range []*accuracyResult{rd.limitMemory, rd.limitOne, rd.limitNodes} {
			if a == nil {
				continue
			}
			nodes := "1 node"
			if a.nodes != 1 {
				nodes = fmt.Sprintf("%d nodes", a.nodes)
			}
			add(accuracy, fmt.Sprintf("storage %s, %s", a.storage, nodes), a.accuracy(), 3)
		}
	}
	return bars
}

// chartPath is where the chart of the report at out goes: beside it, .svg
// for .md.
func chartPath(out string) string {
	return strings.TrimSuffix(out, filepath.Ext(out)) + ".svg"
}

// The chart's layout, in pixels.
const (
	chartWidth   = 960
	chartLabelX  = 372 // right edge of the bar labels
	chartBarX    = 384 // where the bars start (0.0)
	chartBarEnd  = 900 // where the axis ends
	chartTop     = 78  // below the title lines
	chartGroupH  = 26
	chartRowH    = 26
	chartBarH    = 16
	chartBottom  = 40 // below the last row: the axis's tick labels
	chartPadding = 16
	chartDigitW  = 8 // the most a bold 13px digit or point takes
)

// chartColors tells the groups apart, in turn.
var chartColors = []string{"#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2"}

// writeChart writes bars as a horizontal bar chart in hand-written SVG to
// path: one bar per ratio with its value at its end, under its group's
// heading, a dashed line at 1.0, and a title with when the run finished
// and on what machine.
func writeChart(path string, finished time.Time, bars []ratioBar) error {
	top := 1.0
	for _, b := range bars {
		top = max(top, b.value)
	}
	// Room past the longest bar for its value, on a round axis.
	axisMax := math.Ceil(top*1.15/0.25) * 0.25
	step := 0.25
	if axisMax > 2 {
		step = 0.5
	}
	x := func(v float64) float64 { return chartBarX + v/axisMax*(chartBarEnd-chartBarX) }

	// Lay the rows out first: the height follows from them.
	type placed struct {
		bar   ratioBar
		color string
		y     int // the row's top
	}
	var (
		rows    []placed
		headers []struct {
			text string
			y    int
		}
	)
	y, group, color := chartTop, "", -1
	for _, b := range bars {
		if b.group != group || color < 0 {
			group, color = b.group, color+1
			headers = append(headers, struct {
				text string
				y    int
			}{b.group, y})
			y += chartGroupH
		}
		rows = append(rows, placed{bar: b, color: chartColors[color%len(chartColors)], y: y})
		y += chartRowH
	}
	axisY := y + 6
	height := axisY + chartBottom

	var s bytes.Buffer
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="13">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&s, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, height)
	text(&s, chartPadding, 28, `font-size="18" font-weight="bold"`,
		fmt.Sprintf("taskgate bench ratios, %s, %s/%s, %d CPUs", finished.Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU()))
	text(&s, chartPadding, 50, `fill="#555555"`,
		fmt.Sprintf("finished %s UTC, %s, CPUs shared by client, server and source · bar: measure ÷ its baseline · dashed line: 1.0",
			finished.Format("15:04"), runtime.Version()))

	// Gridlines and tick labels, under the bars.
	for v := 0.0; v <= axisMax+1e-9; v += step {
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e3e3e3"/>`+"\n", x(v), chartTop-4, x(v), axisY)
		text(&s, x(v), float64(axisY+18), `text-anchor="middle" fill="#555555"`, strconv.FormatFloat(v, 'f', -1, 64))
	}
	fmt.Fprintf(&s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888888"/>`+"\n", chartBarX, axisY, chartBarEnd, axisY)

	// The line at 1.0, under the bars and their values, which stay legible
	// when they end close to it.
	fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="5,4"/>`+"\n",
		x(1), chartTop-4, x(1), axisY)
	text(&s, x(1), chartTop-8, `text-anchor="middle" fill="#c0392b" font-size="12"`, "1.0")

	for _, h := range headers {
		text(&s, chartPadding, float64(h.y+chartGroupH-8), `font-weight="bold"`, h.text)
	}
	for _, r := range rows {
		barY := r.y + (chartRowH-chartBarH)/2
		mid := r.y + chartRowH/2 + 4 // a text baseline centred on the bar
		text(&s, chartLabelX, float64(mid), `text-anchor="end"`, r.bar.label)
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n",
			chartBarX, barY, x(r.bar.value)-chartBarX, chartBarH, r.color)
		value := fmt.Sprintf("%.*f", r.bar.decimals, r.bar.value)
		// A white ground under the value hides the 1.0 line behind it.
		fmt.Fprintf(&s, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#ffffff"/>`+"\n",
			x(r.bar.value)+2, barY, float64(len(value))*chartDigitW+6, chartBarH)
		text(&s, x(r.bar.value)+5, float64(mid), `font-weight="bold"`, value)
	}

	s.WriteString("</svg>\n")

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, s.Bytes(), 0o644)
}

// text writes one <text> element at (x, y) with attrs, its content escaped.
func text(s *bytes.Buffer, x, y float64, attrs, content string) {
	fmt.Fprintf(s, `<text x="%.1f" y="%.1f" %s>`, x, y, attrs)
	xml.EscapeText(s, []byte(content))
	s.WriteString("</text>\n")
}
