import { main } from '../../src/cli/index';
import { MOCK_MESH_USAGE, mockMeshCommand } from '../../src/mock/mesh';

describe('sp-bridge mock-mesh', () => {
  test('is listed in the usage and has its own help', () => {
    const lines: string[] = [];
    expect(main(['--help'], (l) => lines.push(l))).toBe(0);
    expect(lines.join('\n')).toContain('mock-mesh [--port N]');
    const help: string[] = [];
    expect(main(['mock-mesh', '--help'], (l) => help.push(l))).toBe(0);
    expect(help).toEqual([MOCK_MESH_USAGE]);
  });

  test('rejects bad arguments without starting', () => {
    const out: string[] = [];
    expect(mockMeshCommand(['--port', 'x'], (l) => out.push(l))).toBe(2);
    expect(mockMeshCommand(['--bogus'], (l) => out.push(l))).toBe(2);
    expect(out[0]).toBe("--port needs a port number, not 'x'");
  });
});
