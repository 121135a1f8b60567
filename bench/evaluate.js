#!/usr/bin/env node
// bench/evaluate.js - scores the accuracy benchmark's per-tool results.
//
// Usage: node bench/evaluate.js LABELS TOOL=RESULTS [TOOL=RESULTS ...]
//   LABELS   "LABEL PATH" lines (LABEL ham|spam): every message that was tested.
//   RESULTS  one tool's result lines, all folds concatenated (format in bench/README.md):
//              PATH SCORE VERDICT            one per tested message
//              #learn_seconds X learn_msgs N classify_seconds Y classify_msgs M [KEY VALUE ...]
//                                            one per fold; the numbers are summed
//
// Prints a table (one row per tool), then one machine-readable line per tool:
//   accuracy-summary {"tool":...,"auc":...,...}
// Exits 1 if a results file is malformed or does not cover every message exactly once.
// No npm dependencies.
'use strict';

const fs = require('fs');

const FP_BUDGET = 0.001; // "FN at FP <= 0.1 %"

function die(msg) {
    process.stderr.write(`evaluate: ${msg}\n`);
    process.exit(1);
}

function readLabels(file) {
    const labels = new Map();
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
        if (line.trim() === '') continue;
        const m = line.match(/^(ham|spam)\s+(\S+)\s*$/);
        if (!m) die(`${file}: bad label line: ${line}`);
        if (labels.has(m[2])) die(`${file}: duplicate path ${m[2]}`);
        labels.set(m[2], m[1] === 'spam');
    }
    return labels;
}

function readResults(tool, file, labels) {
    const seen = new Map(); // path -> {score, verdict}
    const stats = {};
    let folds = 0;
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
        const where = `${file}:${i + 1}`;
        if (line.trim() === '') return;
        if (line.startsWith('#learn_seconds') || line.startsWith('# learn_seconds')) {
            const f = line.replace(/^#\s*/, '').trim().split(/\s+/);
            if (f.length % 2 !== 0) die(`${where}: stats line needs KEY VALUE pairs`);
            for (let k = 0; k < f.length; k += 2) {
                const v = Number(f[k + 1]);
                if (!Number.isFinite(v)) die(`${where}: ${f[k]} is not a number`);
                stats[f[k]] = (stats[f[k]] || 0) + v;
            }
            folds++;
            return;
        }
        if (line.startsWith('#')) return; // comment
        const f = line.trim().split(/\s+/);
        if (f.length !== 3) die(`${where}: expected "PATH SCORE VERDICT"`);
        const [path, s, verdict] = f;
        const score = Number(s);
        if (s === '' || !Number.isFinite(score)) die(`${where}: score "${s}" is not a finite number`);
        if (!['spam', 'ham', 'unsure', 'error'].includes(verdict)) die(`${where}: verdict "${verdict}"`);
        if (!labels.has(path)) die(`${where}: ${path} is not in the label list`);
        if (seen.has(path)) die(`${where}: ${path} was classified twice`);
        seen.set(path, { score, verdict });
    });
    for (const k of ['learn_seconds', 'learn_msgs', 'classify_seconds', 'classify_msgs']) {
        if (!(k in stats)) die(`${file}: no stats line with ${k}`);
    }
    const missing = [...labels.keys()].filter((p) => !seen.has(p));
    if (missing.length) die(`${file}: ${missing.length} messages have no result, e.g. ${missing[0]}`);
    return { tool, seen, stats, folds };
}

// ROC AUC as the Mann-Whitney rank statistic: P(score(spam) > score(ham)), ties count 1/2.
function auc(items) {
    const sorted = items.slice().sort((a, b) => a.score - b.score);
    let nSpam = 0;
    let rankSumSpam = 0;
    for (let i = 0; i < sorted.length;) {
        let j = i;
        while (j < sorted.length && sorted[j].score === sorted[i].score) j++;
        const avgRank = (i + 1 + j) / 2; // ranks i+1 .. j
        for (let k = i; k < j; k++) {
            if (sorted[k].spam) {
                nSpam++;
                rankSumSpam += avgRank;
            }
        }
        i = j;
    }
    const nHam = sorted.length - nSpam;
    if (nSpam === 0 || nHam === 0) return NaN;
    return (rankSumSpam - (nSpam * (nSpam + 1)) / 2) / (nSpam * nHam);
}

// The lowest threshold t on the scores ("spam if score >= t") with at most
// floor(FP_BUDGET * nHam) ham at or above it. Tied scores go together, so a tie
// between ham and spam at the top can only be taken or left whole. Returns the
// threshold (Infinity if none) and the FN and FP counts there.
function fnAtFp(items, nHam) {
    const maxFp = Math.floor(FP_BUDGET * nHam + 1e-9);
    const sorted = items.slice().sort((a, b) => b.score - a.score);
    let best = { threshold: Infinity, fp: 0, tp: 0 };
    let fp = 0;
    let tp = 0;
    for (let i = 0; i < sorted.length;) {
        let j = i;
        let dFp = 0;
        let dTp = 0;
        while (j < sorted.length && sorted[j].score === sorted[i].score) {
            if (sorted[j].spam) dTp++;
            else dFp++;
            j++;
        }
        if (fp + dFp > maxFp) break;
        fp += dFp;
        tp += dTp;
        best = { threshold: sorted[i].score, fp, tp };
        i = j;
    }
    return best;
}

function evaluate(res, labels) {
    const items = [];
    let nSpam = 0;
    let nHam = 0;
    let fp = 0;
    let fn = 0;
    let unsure = 0;
    let errors = 0;
    for (const [path, spam] of labels) {
        const r = res.seen.get(path);
        items.push({ score: r.score, spam });
        const saysSpam = r.verdict === 'spam';
        if (r.verdict === 'unsure') unsure++;
        if (r.verdict === 'error') errors++;
        if (spam) {
            nSpam++;
            if (!saysSpam) fn++;
        } else {
            nHam++;
            if (saysSpam) fp++;
        }
    }
    const a = auc(items);
    const op = fnAtFp(items, nHam);
    const st = res.stats;
    const extra = {};
    for (const k of Object.keys(st)) {
        if (!['learn_seconds', 'learn_msgs', 'classify_seconds', 'classify_msgs'].includes(k)) extra[k] = st[k];
    }
    return {
        tool: res.tool,
        messages: items.length,
        spam: nSpam,
        ham: nHam,
        folds: res.folds,
        auc: a,
        one_minus_auc_pct: (1 - a) * 100,
        fp_pct: (100 * fp) / nHam,
        fn_pct: (100 * fn) / nSpam,
        fp: fp,
        fn: fn,
        unsure: unsure,
        errors: errors,
        fn_at_fp01_pct: (100 * (nSpam - op.tp)) / nSpam,
        fp_at_fp01: op.fp,
        threshold_at_fp01: Number.isFinite(op.threshold) ? op.threshold : null,
        learn_msgs: st.learn_msgs,
        learn_seconds: st.learn_seconds,
        learn_msgs_per_s: st.learn_seconds > 0 ? st.learn_msgs / st.learn_seconds : null,
        classify_msgs: st.classify_msgs,
        classify_seconds: st.classify_seconds,
        classify_msgs_per_s: st.classify_seconds > 0 ? st.classify_msgs / st.classify_seconds : null,
        ...extra,
    };
}

function fmt(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return 'n/a';
    return x.toFixed(digits);
}

function table(rows) {
    const head = ['tool', 'ROC AUC', '1-AUC %', 'FP %', 'FN %', 'FN % @FP<=0.1%', 'learn msg/s', 'classify msg/s'];
    const body = rows.map((r) => [
        r.tool,
        fmt(r.auc, 5),
        fmt(r.one_minus_auc_pct, 3),
        fmt(r.fp_pct, 2),
        fmt(r.fn_pct, 2),
        fmt(r.fn_at_fp01_pct, 2),
        fmt(r.learn_msgs_per_s, 0),
        fmt(r.classify_msgs_per_s, 0),
    ]);
    const width = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
    const line = (cells) => '| ' + cells.map((c, i) => (i === 0 ? c.padEnd(width[i]) : c.padStart(width[i]))).join(' | ') + ' |';
    const sep = '|' + width.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|';
    return [line(head), sep, ...body.map(line)].join('\n');
}

function main(argv) {
    if (argv.length < 2) die('usage: evaluate.js LABELS TOOL=RESULTS [TOOL=RESULTS ...]');
    const labels = readLabels(argv[0]);
    const nSpam = [...labels.values()].filter(Boolean).length;
    const rows = argv.slice(1).map((arg) => {
        const eq = arg.indexOf('=');
        if (eq <= 0) die(`expected TOOL=RESULTS, got ${arg}`);
        return evaluate(readResults(arg.slice(0, eq), arg.slice(eq + 1), labels), labels);
    });
    process.stdout.write(`${labels.size} messages (${labels.size - nSpam} ham, ${nSpam} spam), ` +
        `every one tested once; speeds per core, summed over folds\n\n`);
    process.stdout.write(table(rows) + '\n\n');
    for (const r of rows) {
        const out = {};
        for (const [k, v] of Object.entries(r)) {
            out[k] = typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(8)) : v;
        }
        process.stdout.write('accuracy-summary ' + JSON.stringify(out) + '\n');
    }
}

if (require.main === module) main(process.argv.slice(2));
module.exports = { auc, fnAtFp };
