// bench/agreement.js - compares which rules fired per message: mxwarden's JSON
// reports against SpamAssassin's hit lists. Usage: node agreement.js RULES MXW_JSON SA_TSV
// RULES: `mxwarden rules list` output (NAME KIND SCORE; sub-rules have score "-").
'use strict';
const fs = require('fs');
const [rulesFile, mxwFile, saFile] = process.argv.slice(2);
const kinds = new Map();
const partial = new Set();
for (const line of fs.readFileSync(rulesFile, 'utf8').split('\n')) {
    const [name, kind, score, flag] = line.split(' ');
    if (!name || score === '-') continue;
    kinds.set(name, kind);
    if (flag === 'partial') partial.add(name);
}
const mxw = new Map();
for (const line of fs.readFileSync(mxwFile, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    mxw.set(r.file, new Set(r.symbols.map((s) => s.name).filter((s) => kinds.has(s))));
}
const sa = new Map();
for (const line of fs.readFileSync(saFile, 'utf8').split('\n')) {
    if (!line) continue;
    const [file, hits] = line.split('\t');
    sa.set(file, new Set((hits || '').split(',').filter((s) => kinds.has(s))));
}
let pairs = 0, agree = 0, either = 0, both = 0;
const full = { pairs: 0, agree: 0, either: 0, both: 0 }; // rules we evaluate completely
const byRule = new Map();
const byKind = new Map();
for (const [file, saHits] of sa) {
    const ours = mxw.get(file);
    if (!ours) throw new Error(`no mxwarden report for ${file}`);
    for (const [rule, kind] of kinds) {
        const a = ours.has(rule), b = saHits.has(rule);
        pairs++;
        if (a === b) agree++;
        if (a || b) either++;
        if (a && b) both++;
        if (!partial.has(rule)) {
            full.pairs++; if (a === b) full.agree++; if (a || b) full.either++; if (a && b) full.both++;
        }
        const k = byKind.get(kind) || { pairs: 0, agree: 0, either: 0, both: 0 };
        k.pairs++; if (a === b) k.agree++; if (a || b) k.either++; if (a && b) k.both++;
        byKind.set(kind, k);
        if (a !== b) {
            const d = byRule.get(rule) || { onlyOurs: 0, onlySa: 0 };
            if (a) d.onlyOurs++; else d.onlySa++;
            byRule.set(rule, d);
        }
    }
}
const pct = (x, y) => (y ? (100 * x / y).toFixed(2) : 'n/a');
console.log(`messages: ${sa.size}   rules compared: ${kinds.size}   (message, rule) pairs: ${pairs}`);
console.log(`agreement over all pairs: ${pct(agree, pairs)} %`);
console.log(`agreement where either fired: ${pct(both, either)} % (${both} of ${either} pairs fired on both sides)`);
console.log(`rules we evaluate completely (${kinds.size - partial.size}; the other ${partial.size} are metas over SpamAssassin's Perl eval tests):`);
console.log(`  agreement over all pairs: ${pct(full.agree, full.pairs)} %, where either fired: ${pct(full.both, full.either)} % (${full.both} of ${full.either})`);
console.log('by rule type:   pairs   agree %   both/either');
for (const [kind, k] of [...byKind].sort()) {
    console.log(`  ${kind.padEnd(8)} ${String(k.pairs).padStart(8)}   ${pct(k.agree, k.pairs).padStart(6)}    ${k.both}/${k.either}`);
}
const worst = [...byRule].sort((x, y) => (y[1].onlyOurs + y[1].onlySa) - (x[1].onlyOurs + x[1].onlySa)).slice(0, 15);
console.log('rules that disagree most (messages where only mxwarden / only SpamAssassin fired):');
for (const [rule, d] of worst) console.log(`  ${rule.padEnd(28)} ${kinds.get(rule).padEnd(8)} ${d.onlyOurs} / ${d.onlySa}${partial.has(rule) ? '  (partial)' : ''}`);
console.log('agreement-summary ' + JSON.stringify({ messages: sa.size, rules: kinds.size, pairs, agree_pct: +pct(agree, pairs), either_fired_agree_pct: +pct(both, either), complete_rules: kinds.size - partial.size, complete_agree_pct: +pct(full.agree, full.pairs), complete_either_fired_agree_pct: +pct(full.both, full.either) }));
