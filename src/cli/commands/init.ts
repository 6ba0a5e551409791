import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'clipanion';
import { DstackError } from '../../engine/errors.js';
import { DstackCommand } from '../base.js';

const STARTER = `# Workflows of this project; run one with \`dstack run NAME\`.
# Fields: https://github.com/dstackai/dstack (0.7 format) — name, image, commands, deps, artifacts, env,
# ports, working_dir, inputs, cache, resources (cpu, memory, gpu, shm_size, interruptible).
workflows:
  - name: prepare
    help: Writes a small data file as an artifact
    image: python:3.11-slim
    commands:
      - mkdir -p data
      - python3 -c "print('hello from dstack')" > data/hello.txt
    artifacts:
      - path: ./data

  - name: train
    help: Reads what prepare saved
    image: python:3.11-slim
    deps:
      - workflow: prepare
    commands:
      - cat data/hello.txt
      - echo "epochs=\${{ epochs }}" > result.txt
    artifacts:
      - path: ./result.txt
`;

const VARIABLES = `variables:
  global: {}
  train:
    epochs: 3
`;

export class InitCommand extends DstackCommand {
  static override paths = [['init']];
  static override usage = Command.Usage({
    description: 'write a starter .dstack/workflows.yaml',
    details: 'Creates `.dstack/workflows.yaml` and `.dstack/variables.yaml` in the current folder; refuses to overwrite.',
    examples: [['Start a project here', 'dstack init']],
  });

  force = Option.Boolean('--force', false, { description: 'overwrite existing files' });

  async run(): Promise<number> {
    const dir = join(process.cwd(), '.dstack');
    const files = [
      [join(dir, 'workflows.yaml'), STARTER],
      [join(dir, 'variables.yaml'), VARIABLES],
    ] as const;
    for (const [path] of files) {
      if (existsSync(path) && !this.force) {
        throw new DstackError('DS0105', `${path} already exists`, { hint: 'edit it, or pass --force to overwrite' });
      }
    }
    mkdirSync(dir, { recursive: true });
    for (const [path, text] of files) writeFileSync(path, text);
    this.context.stderr.write('Wrote .dstack/workflows.yaml and .dstack/variables.yaml; try `dstack run train --dry-run`\n');
    return 0;
  }
}
