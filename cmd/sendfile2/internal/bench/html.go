package bench

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"

	chart "github.com/wcharczuk/go-chart/v2"
	"github.com/wcharczuk/go-chart/v2/drawing"
)

// WriteHTML writes rep as one self-contained HTML page: the charts are SVG
// drawn here (go-chart) and inlined, with no script, style sheet, font or
// image to fetch, so the page reads the same offline.
func WriteHTML(w io.Writer, rep *Report) error {
	var ran []Result
	for _, r := range rep.Results {
		if r.GBpsMedian != nil {
			ran = append(ran, r)
		}
	}
	var charts []template.HTML
	if len(ran) > 0 {
		draw := []func([]Result, int) ([]byte, error){throughputChart, cpuChart}
		if rep.Config.Direction == Receive {
			draw = []func([]Result, int) ([]byte, error){throughputChart, receiverCPUChart, cacheChart}
		}
		if rep.Config.Rounds > 1 {
			draw = append(draw, roundsChart)
		}
		for _, c := range draw {
			svg, err := c(ran, rep.Config.Rounds)
			if err != nil {
				return fmt.Errorf("bench: report chart: %w", err)
			}
			charts = append(charts, template.HTML(inlineSVG(svg)))
		}
	}
	var table bytes.Buffer
	if err := WriteTable(&table, rep); err != nil {
		return err
	}
	return page.Execute(w, struct {
		R      *Report
		Charts []template.HTML
		Table  string
	}{rep, charts, table.String()})
}

// inlineSVG drops the XML namespace declarations, which an SVG element
// inside HTML does not need (the page then names no URL at all), and gives
// the element the size of its view box, which go-chart leaves out: without
// it, a flex box draws the chart zero pixels wide.
func inlineSVG(svg []byte) string {
	s := string(svg)
	s = strings.Replace(s, ` xmlns="http://www.w3.org/2000/svg"`, "", 1)
	s = strings.Replace(s, ` xmlns:xlink="http://www.w3.org/1999/xlink"`, "", 1)
	var w, h int
	if i := strings.Index(s, `viewBox="0 0 `); i >= 0 {
		if _, err := fmt.Sscanf(s[i+len(`viewBox="0 0 `):], "%d %d", &w, &h); err == nil {
			s = strings.Replace(s, "<svg ", fmt.Sprintf(`<svg width="%d" height="%d" `, w, h), 1)
		}
	}
	return s
}

var palette = []drawing.Color{
	drawing.ColorFromHex("4e79a7"), drawing.ColorFromHex("f28e2b"), drawing.ColorFromHex("e15759"),
	drawing.ColorFromHex("76b7b2"), drawing.ColorFromHex("59a14f"), drawing.ColorFromHex("edc948"),
	drawing.ColorFromHex("b07aa1"), drawing.ColorFromHex("9c755f"),
}

func barChart(title string, rs []Result, value func(Result) *float64, format string) ([]byte, error) {
	var bars []chart.Value
	top, bottom := 0.0, 0.0
	for i, r := range rs {
		v := 0.0
		if p := value(r); p != nil {
			v = *p
		}
		top, bottom = math.Max(top, v), math.Min(bottom, v)
		c := palette[i%len(palette)]
		bars = append(bars, chart.Value{Value: v, Label: string(r.Method),
			Style: chart.Style{FillColor: c, StrokeColor: c, StrokeWidth: 1}})
	}
	if top == 0 {
		top = 1
	}
	g := chart.BarChart{
		Title:      title,
		Background: chart.Style{Padding: chart.Box{Top: 50, Left: 10, Right: 10, Bottom: 40}},
		Width:      max(480, 110*len(bars)),
		Height:     360,
		BarWidth:   60,
		Bars:       bars,
		// Bars from zero, also down to a negative value (a page cache that
		// shrank during the round).
		UseBaseValue: bottom < 0,
		YAxis: chart.YAxis{
			Range:          &chart.ContinuousRange{Min: bottom * 1.15, Max: top * 1.15},
			ValueFormatter: func(v any) string { return fmt.Sprintf(format, v) },
		},
	}
	var buf bytes.Buffer
	err := g.Render(chart.SVG, &buf)
	return buf.Bytes(), err
}

func throughputChart(rs []Result, _ int) ([]byte, error) {
	return barChart("Throughput, GB/s (median over rounds)", rs, func(r Result) *float64 { return r.GBpsMedian }, "%.1f")
}

func cpuChart(rs []Result, _ int) ([]byte, error) {
	return barChart("Sender CPU, seconds per GiB (median)", rs, func(r Result) *float64 { return r.CPUSPerGiB }, "%.2f")
}

func receiverCPUChart(rs []Result, _ int) ([]byte, error) {
	return barChart("Receiver CPU, seconds per GiB (median)", rs, func(r Result) *float64 { return r.ReceiverCPUSPerGiB }, "%.2f")
}

// cacheChart draws how much each method's round grew the page cache.
func cacheChart(rs []Result, _ int) ([]byte, error) {
	return barChart("Page-cache growth per round, MiB (median)", rs, func(r Result) *float64 { return r.CacheGrowthMiB }, "%.0f")
}

// roundsChart draws each method's throughput round by round: the spread, and
// any drift that the interleaving spreads over all methods.
func roundsChart(rs []Result, rounds int) ([]byte, error) {
	var series []chart.Series
	top := 0.0
	for i, r := range rs {
		var xs, ys []float64
		for _, rd := range r.Rounds {
			xs = append(xs, float64(rd.Round))
			ys = append(ys, rd.GBps)
			top = math.Max(top, rd.GBps)
		}
		if len(xs) == 1 { // a line needs two points
			xs = append(xs, xs[0]+0.01)
			ys = append(ys, ys[0])
		}
		c := palette[i%len(palette)]
		series = append(series, chart.ContinuousSeries{
			Name: string(r.Method), XValues: xs, YValues: ys,
			Style: chart.Style{StrokeColor: c, StrokeWidth: 2, DotColor: c, DotWidth: 3},
		})
	}
	var ticks []chart.Tick
	for i := 1; i <= rounds; i++ {
		ticks = append(ticks, chart.Tick{Value: float64(i), Label: fmt.Sprint(i)})
	}
	g := chart.Chart{
		Title:      "Throughput per round, GB/s",
		Background: chart.Style{Padding: chart.Box{Top: 50, Left: 130, Right: 20, Bottom: 10}},
		Width:      720,
		Height:     360,
		XAxis:      chart.XAxis{Name: "round", Ticks: ticks, Range: &chart.ContinuousRange{Min: 1, Max: float64(rounds)}},
		YAxis: chart.YAxis{
			Range:          &chart.ContinuousRange{Min: 0, Max: math.Max(top*1.15, 0.1)},
			ValueFormatter: func(v any) string { return fmt.Sprintf("%.1f", v) },
		},
		Series: series,
	}
	g.Elements = []chart.Renderable{chart.LegendLeft(&g)}
	var buf bytes.Buffer
	err := g.Render(chart.SVG, &buf)
	return buf.Bytes(), err
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sendfile2 bench, {{.R.Machine.Date}}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
svg { max-width: 100%; height: auto; }
</style>
</head>
<body>
<h1>sendfile2 bench{{if eq .R.Config.Direction "receive"}} --direction receive{{end}}</h1>
<p>Linux {{.R.Machine.Kernel}}, {{.R.Machine.CPUs}} CPUs, {{.R.Machine.Go}}, {{.R.Machine.Transport}}, {{.R.Machine.Date}}.</p>
<div class="charts">
{{range .Charts}}<figure>{{.}}</figure>
{{else}}<p>No method completed a round: nothing to chart.</p>
{{end}}</div>
<h2>Results</h2>
<pre>{{.Table}}</pre>
</body>
</html>
`))
