// Tallies scripts/test.sh's results from the runners' structured output, never from their
// human-readable text:
//   node scripts/tally.mjs ctest SUITE JUNIT_XML GTEST_XML_DIR RESULTS   ctest --output-junit +
//                                                                       GTEST_OUTPUT=xml:DIR/
//   node scripts/tally.mjs tap SUITE TAP_FILE RESULTS                   node --test's TAP reporter
//   node scripts/tally.mjs add SUITE NAME STATUS REASON RESULTS         one result by hand
//   node scripts/tally.mjs summary RESULTS                              the closing lines
// RESULTS is a file of JSON lines {suite, name, status: pass|fail|skip, reason}. `summary`
// names every skip with its reason and every failure, prints "N passed, N failed, N skipped"
// last, and exits 1 when anything failed or nothing at all ran.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const [cmd, ...args] = process.argv.slice(2);

function record(results, suite, name, status, reason = '') {
  appendFileSync(results, JSON.stringify({ suite, name, status, reason }) + '\n');
}

function unescapeXml(s) {
  return s
    .replace(/&#x([0-9a-fA-F]+);/g, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#([0-9]+);/g, (_, d) => String.fromCodePoint(parseInt(d, 10)))
    .replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

// The <testcase> elements of a JUnit-style file (ctest's and gtest's share this shape): their
// attributes, and the message of a <failure> or <skipped> child.
function testcases(xml) {
  const out = [];
  const re = /<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g;
  for (let m; (m = re.exec(xml)) !== null;) {
    const attrs = {};
    for (const a of m[1].matchAll(/([\w:-]+)="([^"]*)"/g)) attrs[a[1]] = unescapeXml(a[2]);
    const body = m[2] ?? '';
    const failure = /<failure\b[^>]*?message="([^"]*)"/.exec(body);
    const skipped = /<skipped\b[^>]*?message="([^"]*)"/.exec(body);
    out.push({
      attrs,
      hasFailure: /<failure\b/.test(body),
      failure: failure ? unescapeXml(failure[1]) : '',
      skipped: skipped ? unescapeXml(skipped[1]) : null,
    });
  }
  return out;
}

function oneLine(s) {
  return s.replace(/\s+/g, ' ').trim().slice(0, 300);
}

// ctest's JUnit file says which binaries ran, failed (crash, timeout, sanitizer report at
// exit included) or were skipped (exit 77: every test in it skipped); each binary's gtest XML
// says which of its tests passed, failed or skipped, and why.
function tallyCtest(suite, junit, gtestDir, results) {
  if (!existsSync(junit)) {
    record(results, suite, 'ctest', 'fail', `ctest wrote no ${junit}: the suite did not run`);
    return;
  }
  const binaries = testcases(readFileSync(junit, 'utf8'));
  if (binaries.length === 0) record(results, suite, 'ctest', 'fail', 'ctest ran no tests');
  for (const b of binaries) {
    const name = b.attrs.name;
    const status = b.attrs.status;  // run | fail | notrun | disabled
    const xmlPath = path.join(gtestDir, `${name}.xml`);
    let cases = [];
    if (existsSync(xmlPath)) {
      try {
        cases = testcases(readFileSync(xmlPath, 'utf8'));
      } catch { /* treated as missing below */ }
    }
    let failedInside = 0;
    for (const c of cases) {
      const full = `${name}: ${c.attrs.classname}.${c.attrs.name}`;
      if (c.attrs.status === 'notrun') continue;  // DISABLED_ tests and filtered-out ones
      if (c.hasFailure) {
        failedInside++;
        record(results, suite, full, 'fail', oneLine(c.failure));
      } else if (c.attrs.result === 'skipped' || c.skipped !== null) {
        record(results, suite, full, 'skip', oneLine(c.skipped ?? 'skipped'));
      } else {
        record(results, suite, full, 'pass');
      }
    }
    if (status === 'fail' && failedInside === 0) {
      // Exit code, crash, timeout or a sanitizer's report after the last test.
      record(results, suite, name, 'fail',
        cases.length ? 'the binary failed after its tests passed (sanitizer report, crash at exit or timeout): see the log'
          : 'the binary failed before writing results (crash, timeout or missing): see the log');
    } else if (cases.length === 0 && status === 'run') {
      record(results, suite, name, 'pass');
    } else if (cases.length === 0 && (status === 'notrun' || status === 'disabled')) {
      record(results, suite, name, 'skip', b.skipped === 'SKIP_RETURN_CODE=77'
        ? 'exit 77: every test in it skipped' : `ctest did not run it (${b.skipped ?? status})`);
    }
  }
}

// node --test's TAP: "ok N - name # SKIP reason", "not ok N - name", each followed by a YAML
// block ("type: 'suite'" marks a describe(), "error: ..." a failure's message), subtests
// indented by 4 under "# Subtest: name". Tests count one each; a suite counts only when it
// failed by itself (a hook) or was skipped whole (it then prints no children). The summary
// lines ("# pass N", "# fail N", "# cancelled N") are cross-checked.
function tallyTap(suite, tapFile, results) {
  if (!existsSync(tapFile)) {
    record(results, suite, 'node --test', 'fail', `no TAP output (${tapFile}): the suite did not run`);
    return;
  }
  const lines = readFileSync(tapFile, 'utf8').split('\n');
  const summary = {};
  for (const l of lines) {
    const m = /^# (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(l);
    if (m) summary[m[1]] = Number(m[2]);
  }
  const stack = [];
  let failedTests = 0;
  for (let i = 0; i < lines.length; i++) {
    const sub = /^((?:    )*)# Subtest: (.*)$/.exec(lines[i]);
    if (sub) {
      const d = sub[1].length / 4;
      stack.length = d;
      stack[d] = sub[2];
      continue;
    }
    const m = /^((?:    )*)(ok|not ok) \d+ - (.*?)(?: # (SKIP|TODO)\b ?(.*))?$/.exec(lines[i]);
    if (!m) continue;
    const depth = m[1].length / 4;
    const yaml = {};
    if (lines[i + 1]?.trim() === '---') {
      for (let j = i + 2; j < lines.length && lines[j].trim() !== '...'; j++) {
        const kv = /^\s*(type|error|failureType): (.*)$/.exec(lines[j]);
        if (kv && yaml[kv[1]] === undefined) yaml[kv[1]] = kv[2].replace(/^'|'$/g, '');
      }
    }
    const full = [...stack.slice(0, depth), m[3]].join(' > ');
    const ok = m[2] === 'ok';
    const directive = m[4];
    const reason = m[5] ?? '';
    if (yaml.type === 'suite') {
      if (directive === 'SKIP') record(results, suite, full, 'skip', reason);
      else if (!ok && yaml.failureType !== 'subtestsFailed') {
        failedTests++;
        record(results, suite, full, 'fail', oneLine(yaml.error ?? yaml.failureType ?? 'see the log'));
      }
      continue;
    }
    if (directive === 'SKIP') record(results, suite, full, 'skip', reason);
    else if (directive === 'TODO') record(results, suite, full, 'skip', `todo: ${reason}`);
    else if (ok) record(results, suite, full, 'pass');
    else {
      failedTests++;
      record(results, suite, full, 'fail', oneLine(yaml.error ?? yaml.failureType ?? 'see the log'));
    }
  }
  if (summary.fail === undefined) {
    record(results, suite, 'node --test', 'fail', 'the TAP output has no summary: the run was cut short');
  } else if ((summary.fail ?? 0) + (summary.cancelled ?? 0) > 0 && failedTests === 0) {
    record(results, suite, 'node --test', 'fail',
      `the summary says fail ${summary.fail}, cancelled ${summary.cancelled}`);
  }
}

function summarize(results) {
  const rows = existsSync(results)
    ? readFileSync(results, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
  const by = (s) => rows.filter((r) => r.status === s);
  const pass = by('pass'), fail = by('fail'), skip = by('skip');
  if (skip.length) {
    console.log(`== skipped (${skip.length}):`);
    for (const r of skip) console.log(`  SKIP [${r.suite}] ${r.name}: ${r.reason}`);
  }
  if (fail.length) {
    console.log(`== failed (${fail.length}):`);
    for (const r of fail) console.log(`  FAIL [${r.suite}] ${r.name}: ${r.reason}`);
  }
  const suites = [...new Set(rows.map((r) => r.suite))];
  for (const s of suites) {
    const n = (st) => rows.filter((r) => r.suite === s && r.status === st).length;
    console.log(`   ${s}: ${n('pass')} passed, ${n('fail')} failed, ${n('skip')} skipped`);
  }
  console.log(`${pass.length} passed, ${fail.length} failed, ${skip.length} skipped`);
  process.exit(fail.length > 0 || pass.length === 0 ? 1 : 0);
}

switch (cmd) {
  case 'ctest': tallyCtest(args[0], args[1], args[2], args[3]); break;
  case 'tap': tallyTap(args[0], args[1], args[2]); break;
  case 'add': record(args[4], args[0], args[1], args[2], args[3] ?? ''); break;
  case 'summary': summarize(args[0]); break;
  default:
    console.error('usage: tally.mjs ctest|tap|add|summary ...');
    process.exit(2);
}
