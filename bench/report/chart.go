package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// setupColors: one colour per setup, the same in every panel.
var setupColors = map[string]string{
	"in":      "#4c78a8",
	"go-c":    "#f58518",
	"c-go":    "#54a24b",
	"go-go":   "#b279a2",
	"gotls-c": "#9d755d",
	"c-gotls": "#bab0ac",
}

func setupColor(id string) string {
	if c, ok := setupColors[id]; ok {
		return c
	}
	return "#888888"
}

func setupLabel(id string) string {
	if id == "in" {
		return "golibtls ÷ C, one process"
	}
	return pairLabel(id) + " ÷ C·C"
}

// chartRow is one band of the chart: a scenario and metric, with a bar per
// setup in each panel.
type chartRow struct {
	label  string
	bounds []string
}

// chart draws golibtls ÷ C for every charted check of each run (a panel
// per run), with the targets as ticks.
func chart(runs []*run) []byte {
	var rows []chartRow
	var setups []string
	panels := make([]map[string]map[string]check, len(runs)) // row label → setup → check
	maxRatio := 1.5
	for i, r := range runs {
		panels[i] = map[string]map[string]check{}
		for _, c := range append(r.checks(), r.cpuInfo()...) {
			if c.chart == "" {
				continue
			}
			j := slices.IndexFunc(rows, func(x chartRow) bool { return x.label == c.chart })
			if j < 0 {
				rows = append(rows, chartRow{label: c.chart})
				j = len(rows) - 1
			}
			b := c.bound
			if c.limit == 0 {
				b = ""
			} else if strings.HasPrefix(c.target, "idle") {
				b = "≤ C + 6 KiB"
			}
			if b != "" && !slices.Contains(rows[j].bounds, b) {
				rows[j].bounds = append(rows[j].bounds, b)
			}
			if !slices.Contains(setups, c.setupID) {
				setups = append(setups, c.setupID)
			}
			if panels[i][c.chart] == nil {
				panels[i][c.chart] = map[string]check{}
			}
			panels[i][c.chart][c.setupID] = c
			if c.result != "n/a" {
				maxRatio = math.Max(maxRatio, math.Max(c.ratio, c.limit))
			}
		}
	}
	slices.SortStableFunc(setups, func(a, b string) int { return setupRank(a) - setupRank(b) })
	xmax := math.Min(math.Ceil(maxRatio*4)/4, 3)

	const (
		labelW = 330
		panelW = 340
		gap    = 24
		barH   = 9
		barGap = 2
		rowPad = 7
		top    = 58
		font   = `font-family="sans-serif" font-size="11"`
	)
	rowH := rowPad*2 + len(setups)*(barH+barGap)
	width := labelW + len(runs)*(panelW+gap)
	height := top + len(rows)*rowH + 84 + 16*len(setups) + 14*len(runs)
	x0 := func(p int) int { return labelW + p*(panelW+gap) }
	scale := func(v float64) float64 { return math.Min(v, xmax) / xmax * float64(panelW-56) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n", width, height, width, height, font)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">golibtls ÷ C libtls, against issue 11's targets</text>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="36" fill="#555">rates: higher is better; CPU and memory: lower is better. Ticks: the target; dashed: parity. Values past %.2f are cut.</text>`+"\n", xmax)
	for p, r := range runs {
		x := x0(p)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x, top-6, html.EscapeString(r.title()))
		// grid and axis
		for v := 0.0; v <= xmax+1e-9; v += 0.25 {
			gx := float64(x) + scale(v)
			stroke, dash := "#e4e4e4", ""
			if math.Abs(v-1) < 1e-9 {
				stroke, dash = "#555", ` stroke-dasharray="4,3"`
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"%s/>`+"\n", gx, top, gx, top+len(rows)*rowH, stroke, dash)
			if math.Mod(v, 0.5) < 1e-9 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%.1f</text>`+"\n", gx, top+len(rows)*rowH+14, v)
			}
		}
	}
	for i, row := range rows {
		y := top + i*rowH
		if i%2 == 1 {
			fmt.Fprintf(&b, `<rect x="0" y="%d" width="%d" height="%d" fill="#f6f6f6" fill-opacity="0.6"/>`+"\n", y, width, rowH)
		}
		label := row.label
		if len(row.bounds) > 0 {
			label += "  (" + strings.Join(row.bounds, " / ") + ")"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-10, y+rowH/2+4, html.EscapeString(label))
		for p := range runs {
			for s, id := range setups {
				c, ok := panels[p][row.label][id]
				if !ok {
					continue
				}
				by := y + rowPad + s*(barH+barGap)
				x := float64(x0(p))
				if c.result == "n/a" {
					fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="9" fill="#555">n/a: %s</text>`+"\n", x+3, by+barH-1, html.EscapeString(c.note))
					continue
				}
				w := scale(c.ratio)
				fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x, by, w, barH, setupColor(id))
				tx := x + w
				if c.limit > 0 {
					lx := x + scale(c.limit)
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black" stroke-width="2"/>`+"\n", lx, by-1, lx, by+barH+1)
					tx = math.Max(tx, lx)
				}
				color := map[string]string{"PASS": "#2e7d32", "MISS": "#c62828"}[c.result]
				if color == "" {
					color = "#555"
				}
				mark := map[string]string{"PASS": " ✓", "MISS": " ✗"}[c.result]
				fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="9" fill="%s">%.2f%s</text>`+"\n", tx+4, by+barH-1, color, c.ratio, mark)
			}
		}
	}
	ly := top + len(rows)*rowH + 34
	for s, id := range setups {
		y := ly + s*16
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="10" fill="%s"/>`+"\n", labelW, y-9, setupColor(id))
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", labelW+18, y, html.EscapeString(setupLabel(id)))
	}
	fy := ly + len(setups)*16 + 8
	fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">Two processes: the CPU rows compare the golibtls process with the C one in the same role.</text>`+"\n", fy)
	fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">Idle: server RSS per connection, its tick at C's + 6 KiB. CPU per handshake has no target.</text>`+"\n", fy+14)
	for i, r := range runs {
		m := r.metaValue("run")
		if mc := r.metaValue("machine"); mc != "" {
			m = mc + "; " + m
		}
		fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555" font-size="9">%s</text>`+"\n", fy+30+14*i, html.EscapeString(r.title()+": "+m))
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func setupRank(id string) int {
	if id == "in" {
		return -1
	}
	if r, ok := pairRank[id]; ok {
		return r
	}
	return 100
}
