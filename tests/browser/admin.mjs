// Browser test of the web admin (TAP on stdout): Playwright driving Debian's Chromium.
// Started by admin.t, which runs sipwake, the APNs emulator and sipp, and passes in env:
// BASE, ADMIN_USER, ADMIN_PASSWORD, P8, KEY_ID, TEAM_ID, REGISTER_CMD, MESSAGE_CMD, HOSTILE_UA,
// OUT (where the dashboard screenshot goes).
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { chromium } from 'playwright-core';

const env = process.env;
let n = 0;
let failed = 0;
const ok = (cond, name, diag) => {
  n += 1;
  if (!cond) failed += 1;
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${name}`);
  if (!cond && diag) console.log(`# ${String(diag).replace(/\n/g, '\n# ')}`);
};
const shell = (cmd) => execFileSync('/bin/sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  timeout: 30000,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
page.setDefaultTimeout(10000);
const consoleErrors = [];
page.on('pageerror', (e) => consoleErrors.push(e.message));
page.on('dialog', (d) => d.accept());

async function step(name, fn) {
  try {
    const r = await fn();
    ok(r !== false, name);
  } catch (e) {
    ok(false, name, e.stack || e);
  }
}

await step('the admin page shows the login form', async () => {
  await page.goto(env.BASE);
  await page.locator('#login-form').waitFor();
});
await step('a wrong password: the form says so', async () => {
  await page.fill('input[name=user]', env.ADMIN_USER);
  await page.fill('input[name=password]', 'not the password');
  await page.click('#login-form button');
  await page.locator('#login-error', { hasText: 'wrong user name or password' }).waitFor();
});
await step('log in: the dashboard with its cards', async () => {
  await page.fill('input[name=password]', env.ADMIN_PASSWORD);
  await page.click('#login-form button');
  await page.locator('#nav').waitFor();
  await page.locator('[data-card=push-apns]').waitFor();
  await page.locator('[data-card=rereg]').waitFor();
  await page.locator('[data-card=pending]').waitFor();
  await page.locator('#expiry').waitFor();
  await page.locator('#credential-problems', { hasText: 'No push service has refused' }).waitFor();
});
await step('the session cookie is out of the page\'s reach (HttpOnly)', async () =>
  !(await page.evaluate(() => document.cookie)).includes('sipwake_session'));

const hostile = '<img src=x onerror="window.__xss=1">';
await step('a tenant named with markup: refused, the error shown as text', async () => {
  await page.click('#nav a[href="#/tenants"]');
  await page.locator('#tenant-add').waitFor();
  await page.fill('#tenant-add input[name=name]', hostile);
  await page.click('#tenant-add button');
  await page.locator('#tenant-error', { hasText: '<img src=x' }).waitFor();
  const imgs = await page.locator('#view img').count();
  return imgs === 0 && (await page.evaluate(() => window.__xss)) === undefined;
});
await step('create a tenant with its domain', async () => {
  await page.fill('#tenant-add input[name=name]', 'acme');
  await page.fill('#tenant-add input[name=domains]', 'example.com');
  await page.click('#tenant-add button');
  await page.locator('[data-tenant=acme]', { hasText: 'example.com' }).waitFor();
});
await step('upload an APNs .p8 key: listed by key id and team, never shown', async () => {
  const t = page.locator('[data-tenant=acme]');
  await t.locator('select[name=kind]').selectOption('apns_key');
  await t.locator('input[name=key_id]').fill(env.KEY_ID);
  await t.locator('input[name=team_id]').fill(env.TEAM_ID);
  await t.locator('input[name=file]').setInputFiles(env.P8);
  await t.locator('[data-form=credential] button').click();
  await page.locator('[data-tenant=acme] table.creds', { hasText: env.KEY_ID }).waitFor();
  await page.screenshot({ path: `${env.OUT}/tenants.png`, fullPage: true });
  const html = await page.content();
  return html.includes(env.TEAM_ID) && !html.includes('PRIVATE KEY');
});

shell(env.REGISTER_CMD);
await step('the phone sipp registered appears in registrations', async () => {
  await page.click('#nav a[href="#/registrations"]');
  await page.fill('#reg-search input[name=aor]', 'pat');
  await page.click('#reg-search button');
  await page.locator('#registrations tr[data-aor="pat@example.com"]', { hasText: 'apns' }).waitFor();
});
await step('its hostile User-Agent is shown as text, not run', async () => {
  const ua = await page.locator('#registrations tr[data-aor="pat@example.com"] td.ua').textContent();
  await page.screenshot({ path: `${env.OUT}/registrations.png`, fullPage: true });
  return ua === env.HOSTILE_UA && (await page.locator('#registrations img').count()) === 0
    && (await page.evaluate(() => window.__xss)) === undefined;
});

shell(env.MESSAGE_CMD);
await step('the push for a MESSAGE to it is in the push log, signed with the uploaded key', async () => {
  await page.click('#nav a[href="#/push-log"]');
  await page.fill('#push-filter input[name=tenant]', 'acme');
  for (let i = 0; i < 40; i += 1) {
    await page.click('#push-filter button');
    await page.locator('#view[aria-busy=false]').waitFor();
    if (await page.locator('#push-log tr', { hasText: 'acme/default' }).filter({ hasText: 'delivered' }).count()) {
      await page.screenshot({ path: `${env.OUT}/push-log.png`, fullPage: true });
      return true;
    }
    await page.waitForTimeout(250);
  }
  return false;
});
await step('the pending message is listed', async () => {
  await page.click('#nav a[href="#/messages"]');
  await page.locator('#messages tr[data-aor="pat@example.com"]').waitFor();
});

await step('the dashboard counts the push, fits a phone\'s width; screenshots are saved', async () => {
  await page.click('#nav a[href="#/dashboard"]');
  await page.locator('[data-card=push-apns]', { hasText: '1 delivered' }).waitFor();
  const file = `${env.OUT}/dashboard.png`;
  await page.screenshot({ path: file, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 }); /* a phone */
  await page.screenshot({ path: `${env.OUT}/dashboard-narrow.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await page.setViewportSize({ width: 1280, height: 900 });
  if (overflow) throw new Error('the dashboard is wider than a phone screen');
  return statSync(file).size > 10000;
});

await step('reload the policy from the policy page', async () => {
  await page.click('#nav a[href="#/policy"]');
  await page.locator('#policy-generation', { hasText: '1' }).waitFor();
  await page.click('#reload');
  await page.locator('#reload-result', { hasText: 'Reloaded: generation 2' }).waitFor();
  return (await page.locator('#policy-generation').textContent()) === '2';
});
await step('the audit log shows what was done, and by whom', async () => {
  await page.click('#nav a[href="#/audit"]');
  await page.locator('#audit', { hasText: 'credential.put' }).waitFor();
  const text = await page.locator('#audit').textContent();
  return text.includes('tenant.add') && text.includes('policy.reload') && text.includes(env.ADMIN_USER);
});
await step('log out: back to the login form, the session gone', async () => {
  await page.click('#logout');
  await page.locator('#login-form').waitFor();
  const status = await page.evaluate(async () => (await fetch('/api/session')).status);
  return status === 401;
});
ok(consoleErrors.length === 0, 'no script errors in the page', consoleErrors.join('\n'));

await browser.close();
console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
