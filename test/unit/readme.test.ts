/**
 * Every YAML block of README.md is a file of one example project: it must load with no problem
 * at all, and every workflow in it must plan and resolve (issue 8: the README's own example failed
 * with DS0008). A block says which file it is on its first line (`# .dstack/workflows.yaml`,
 * `# .dstack/variables.yaml`); a block that does not is a failure, so a new example cannot slip by
 * untested.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { briefly } from '../../src/engine/diagnostics.js';
import { formatError, isDstackError } from '../../src/engine/errors.js';
import { planRun } from '../../src/engine/plan.js';
import { resolveJob } from '../../src/engine/resolve.js';
import { loadProject } from '../../src/engine/workflow/load.js';
import { withTimeout } from '../helpers/timeout.js';

const README = fileURLToPath(new URL('../../README.md', import.meta.url));

/** The ```yaml blocks, with the line each starts on. */
function yamlBlocks(markdown: string): { line: number; text: string }[] {
  const blocks: { line: number; text: string }[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^```ya?ml\s*$/.test(lines[i]!)) continue;
    const start = i + 1;
    while (i + 1 < lines.length && !/^```\s*$/.test(lines[i + 1]!)) i++;
    blocks.push({ line: start + 1, text: lines.slice(start, i + 1).join('\n') });
    i++;
  }
  return blocks;
}

const FILE_RE = /^#\s*(\.dstack\/(?:workflows\.ya?ml|workflows\/[\w.-]+\.ya?ml|variables\.yaml))\b/;

test('README.md: every YAML block loads as part of one project, and every workflow plans', withTimeout(10_000, async () => {
  const blocks = yamlBlocks(readFileSync(README, 'utf8'));
  assert.ok(blocks.length >= 2, `found ${blocks.length} YAML blocks in README.md`);
  const root = mkdtempSync(join(tmpdir(), 'dstack-readme-'));
  try {
    const written = new Set<string>();
    for (const b of blocks) {
      const file = FILE_RE.exec(b.text)?.[1];
      assert.ok(file, `README.md:${b.line}: a YAML block must start with the file it is, e.g. \`# .dstack/workflows.yaml\``);
      assert.not.ok(written.has(file!), `README.md:${b.line}: ${file} is given twice`);
      written.add(file!);
      mkdirSync(dirname(join(root, file!)), { recursive: true });
      writeFileSync(join(root, file!), `${b.text}\n`);
    }
    const project = await loadProject(root);
    assert.equal(project.diagnostics.map(briefly), [], 'the README example has problems');
    assert.ok(project.workflows.size > 0);
    for (const name of project.workflows.keys()) {
      try {
        for (const job of planRun(project, name).jobs)
          resolveJob(job.workflow, { project, runName: 'wet-mangust-1', args: [], overrides: {}, hostEnv: {} });
      } catch (e) {
        assert.unreachable(`README workflow ${name} does not plan:\n${isDstackError(e) ? formatError(e) : String(e)}`);
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}));

test('yamlBlocks finds fenced yaml blocks and their lines', () => {
  assert.equal(yamlBlocks('a\n```yaml\nx: 1\ny: 2\n```\n```sh\nls\n```\n```yml\nz: 3\n```\n'), [
    { line: 3, text: 'x: 1\ny: 2' },
    { line: 10, text: 'z: 3' },
  ]);
});

test.run();
