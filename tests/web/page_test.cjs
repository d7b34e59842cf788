// The admin web page in a real browser: Debian's headless Chromium driven by playwright-core.
// Usage: node page_test.cjs <admin base URL> <webhook URL> <basic auth header> <admin token> <screenshot.png>
// Exits 0 when every check passed; prints what failed otherwise.
'use strict';
const { chromium } = require(process.env.PLAYWRIGHT_CORE || 'playwright-core');

const [adminUrl, webhookUrl, basicAuth, token, screenshot] = process.argv.slice(2);

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
  console.log('ok - ' + what);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const failures = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 800 } });  // a laptop screen
    page.on('console', (m) => { if (m.type() === 'error' && !/401/.test(m.text())) failures.push('console: ' + m.text()); });
    page.on('pageerror', (e) => failures.push('page error: ' + e.message));
    await page.goto(adminUrl);

    // The token is asked for, then used.
    await page.waitForSelector('#token-form:not([hidden])');
    check(true, 'the page asks for the admin token');
    await page.fill('#token', token);
    await page.press('#token', 'Enter');
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length >= 5);
    check(await page.isHidden('#token-form'), 'the token form goes away once the token works');
    const total = await page.locator('#events tbody tr').count();
    check(total === 5, `all 5 events listed (got ${total})`);

    // Filter by the keyboard: "/" focuses the filters, Enter applies them.
    await page.keyboard.press('/');
    await page.keyboard.type('deal');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 3);
    const entities = await page.locator('#events tbody tr td:nth-child(4)').allTextContents();
    check(entities.every((e) => e === 'deal'), 'the entity filter leaves only deals');

    // Open the change event with j/k + Enter and see its diff.
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.keyboard.press('j');
    await page.keyboard.press('j');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#detail:not([hidden])');
    const title = await page.textContent('#detail-title');
    check(/deal 1 change/.test(title), `the detail shows the change of deal 1 (${title})`);
    const diff = await page.locator('#diff tbody tr').allTextContents();
    check(diff.some((r) => r.includes('stage_id') && r.includes('1') && r.includes('2')), 'the diff shows stage_id 1 -> 2');
    check(diff.some((r) => r.includes('value') && r.includes('10') && r.includes('20')), 'the diff shows value 10 -> 20');
    check(diff.some((r) => r.includes('Pipeline stage') && r.includes('stage_id')), 'the diff names the field as Pipedrive does');
    const body = await page.textContent('#detail-body');
    check(body.includes('"meta"'), 'the original body is shown');
    const href = await page.getAttribute('#record-link', 'href');
    check(href === 'https://acme.pipedrive.com/deal/1' && await page.isVisible('#record-link'),
          `the detail links to the deal in Pipedrive (${href})`);

    // The entity's timeline.
    await page.keyboard.press('t');
    await page.waitForSelector('#timeline:not([hidden])');
    const entries = await page.locator('#timeline .tl-entry').count();
    check(entries === 2, `the timeline of deal 1 has its 2 events (got ${entries})`);
    await page.screenshot({ path: screenshot, fullPage: false });
    await page.keyboard.press('Escape');
    check(await page.isHidden('#detail'), 'Escape closes the detail');

    // Live: a webhook posted now appears without a reload.
    const res = await fetch(webhookUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: basicAuth },
      body: JSON.stringify({ data: { id: 9, title: 'Live' }, previous: null,
        meta: { action: 'create', entity: 'deal', entity_id: '9', id: 'live-1', company_id: '777', user_id: '12',
                timestamp: new Date().toISOString(), version: '2.0', webhook_id: '99', attempt: 1 } }),
    });
    check(res.status === 200, 'the live webhook was stored');
    await page.waitForFunction(() => [...document.querySelectorAll('#events tbody tr td:nth-child(6)')].some((td) => td.textContent === '9'),
                               null, { timeout: 10000 });
    check(true, 'the new event appeared by itself');

    // Stats with the per-hour chart, and the handlers.
    await page.click('nav button[data-view="stats"]');
    await page.waitForFunction(() => document.querySelectorAll('#chart div').length >= 1);
    const summary = await page.textContent('#stats-summary');
    check(/6 events/.test(summary), `stats count the events (${summary})`);
    const storage = await page.textContent('#stats-storage');
    check(/bytes per event/.test(storage) && /bodies stored at 0\.\d+x/.test(storage), `stats show the storage (${storage})`);
    const rejected = await page.locator('#rejected-table tbody tr').allTextContents();
    check(rejected.some((r) => r.includes('unauthorized')), 'rejected requests are listed by reason');
    await page.click('nav button[data-view="handlers"]');
    await page.waitForFunction(() => document.querySelectorAll('#handlers-table tbody tr').length >= 1);
    check((await page.textContent('#handlers-table tbody')).includes('sink'), 'handler status is shown');
    const state = await page.textContent('#handlers-table tbody tr td:nth-child(2)');
    check(state === 'active', `the handler is active (${state})`);
    await page.click('#handlers-table tbody tr button');
    await page.waitForFunction(() => document.querySelector('#handlers-table tbody tr td:nth-child(2)').textContent.startsWith('paused by hand'),
                               null, { timeout: 10000 });
    check(true, 'the Pause button pauses the handler by hand');
    await page.click('#handlers-table tbody tr button');
    await page.waitForFunction(() => document.querySelector('#handlers-table tbody tr td:nth-child(2)').textContent === 'active',
                               null, { timeout: 10000 });
    check(true, 'the Resume button resumes it');
    await page.screenshot({ path: screenshot.replace(/\.png$/, '-stats.png') });

    // Backfill runs: the one recorded is listed; without a Pipedrive token none can be started.
    await page.click('nav button[data-view="backfills"]');
    await page.waitForFunction(() => document.querySelectorAll('#backfills-table tbody tr').length >= 1);
    const run = await page.textContent('#backfills-table tbody tr');
    check(run.includes('downtime') && run.includes('done') && run.includes('deal, person'), `a backfill run is listed (${run})`);
    check(await page.isDisabled('#backfill-form button'), 'without a token the backfill form is disabled');
    check((await page.textContent('#backfill-note')).includes('no Pipedrive token'), 'and says why');
  } catch (err) {
    failures.push(err.message);
  } finally {
    await browser.close();
  }
  if (failures.length) {
    console.error(failures.join('\n'));
    process.exit(1);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
