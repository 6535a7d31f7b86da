package atmclient;

import java.io.EOFException;
import java.io.IOException;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.jpos.iso.ISOException;
import org.jpos.iso.ISOMsg;
import org.jpos.iso.ISOPackager;
import org.jpos.iso.BaseChannel;

/**
 * An ATM network / switch talking to pingate's acquirer listener, built on
 * jPOS from docs/iso8583-acquirer.md and docs/dev-keys.md alone, as a bank's
 * team would: the packager is the document's data element table, the channel
 * its binary2 framing, the PIN blocks ISO 9564-1 (and SM4-0 / SM4-4) under the
 * published development zone PIN keys, the key changes TR-31 version B blocks
 * and SM4-ECB keys under the development ZMKs, the cards and PINs the
 * simulated issuer's population as the document derives them.
 *
 * <p>Usage: {@code java -cp ... atmclient.AcquirerClient --addr host:port --doc docs/iso8583-acquirer.md}
 * against a gateway on the embedded default. Every answer's MTI, DE 39 and
 * field use (which elements come back, which are echoed unchanged) is checked
 * as the document states; a summary is printed, and the exit status is 1 with
 * each mismatch named. Output never carries a PAN, a PIN, a PIN block or key
 * bytes: steps are named by what they do, never by their card.
 *
 * <p>Cards are chosen at random in the population on each run, and the key
 * changes end by bringing the development keys back, so that the client can
 * run again against the same gateway (a PIN change stays changed).
 */
public final class AcquirerClient {
  // docs/iso8583-acquirer.md, "Development setup": the acquirers of the embedded default.
  static final String ATM = "100001";
  static final String BRANCH = "200001";
  static final String SM4_ATM = "100003";
  static final String UNKNOWN_ACQUIRER = "999999";
  // docs/dev-keys.md: published development keys (protect nothing).
  static final byte[] ATM_ZPK = HexFormat.of().parseHex("0123456789ABCDEFFEDCBA9876543210");
  static final byte[] BRANCH_ZPK = HexFormat.of().parseHex("000102030405060708090A0B0C0D0E0F");
  static final byte[] SM4_ATM_ZPK = HexFormat.of().parseHex("0123456789ABCDEFFEDCBA9876543210");
  static final byte[] SM4_ATM_ZMK = HexFormat.of().parseHex("1234567890ABCDEFABCDEF0987654321");
  static final byte[] ATM_ZMK = HexFormat.of().parseHex("89E88CF7931444F334BD7547FC3F380C");
  // docs/iso8583-acquirer.md, DE 123 worked example: the new key the golden key change delivers.
  static final byte[] ATM_ZPK_NEXT = HexFormat.of().parseHex("F039121BEC83D26B169BDCD5B22AAF8F");
  static final String RANGE_A = "62284812";
  static final String RANGE_B = "62284813";
  static final String RANGE_C = "621700";

  // Field use per message (docs/iso8583-acquirer.md, generated table): M and O per response column.
  static final Set<Integer> M_0110 = Set.of(2, 3, 7, 11, 32, 37, 39, 41, 42);
  static final Set<Integer> O_0110 = Set.of(12, 13, 100);
  static final Set<Integer> M_0430 = Set.of(3, 7, 11, 32, 37, 39, 41, 42);
  static final Set<Integer> O_0430 = Set.of(2, 90, 100);
  static final Set<Integer> M_0810 = Set.of(7, 11, 39, 70);
  static final Set<Integer> O_0810 = Set.of(32, 100);
  static final Set<Integer> O_0810_161 = Set.of(32, 53, 100);
  // Never echoed (Encoding).
  static final Set<Integer> NEVER_ECHOED = Set.of(48, 52, 53, 123, 125);

  private static final DateTimeFormatter DE7 = DateTimeFormatter.ofPattern("MMddHHmmss");
  private static final DateTimeFormatter DE12 = DateTimeFormatter.ofPattern("HHmmss");
  private static final DateTimeFormatter DE13 = DateTimeFormatter.ofPattern("MMdd");

  private final String host;
  private final int port;
  private final Path doc;
  private final String framing;
  private int readTimeoutMillis; // 0: not checked (the default 10 s would slow every run)
  private final ISOPackager packager;
  private final SecureRandom random = new SecureRandom();
  private final List<String> mismatches = new ArrayList<>();
  private final Set<Integer> usedIndex = new TreeSet<>();
  private int checks;
  private String lastStep = "start";
  private String lockedPan; // a card the ATM part locked with wrong PINs, for the branch to unblock
  private String lockedPin;
  private byte[] atmKey = ATM_ZPK; // key index 01 of the ATM network: the golden key change replaces it
  private int stan;
  private int rrn;
  private int terminal;

  AcquirerClient(String host, int port, Path doc, String framing) throws ISOException {
    this.host = host;
    this.port = port;
    this.doc = doc;
    this.framing = framing;
    this.packager = Wire.packager();
    this.stan = 1 + random.nextInt(900000);
    this.rrn = random.nextInt(100000);
    this.terminal = random.nextInt(500000);
  }

  public static void main(String[] args) throws Exception {
    String addr = null;
    String doc = "docs/iso8583-acquirer.md";
    String framing = "binary2";
    String scenario = "embedded-default";
    int readTimeoutMillis = 0;
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--addr" -> addr = args[i + 1];
        case "--doc" -> doc = args[i + 1];
        case "--framing" -> framing = args[i + 1];
        case "--scenario" -> scenario = args[i + 1];
        case "--read-timeout-ms" -> readTimeoutMillis = Integer.parseInt(args[i + 1]);
        default -> addr = null;
      }
    }
    if (addr == null || addr.lastIndexOf(':') < 0 || !Set.of("binary2", "ascii4").contains(framing)
        || !Set.of("embedded-default", "sign-on-required", "in-flight").contains(scenario)) {
      System.err.println("usage: AcquirerClient --addr host:port [--doc docs/iso8583-acquirer.md]"
          + " [--framing binary2|ascii4] [--scenario embedded-default|sign-on-required|in-flight]"
          + " [--read-timeout-ms N (the gateway's acquirer_listener.read_timeout, to check it)]");
      System.exit(2);
    }
    int colon = addr.lastIndexOf(':');
    AcquirerClient c = new AcquirerClient(addr.substring(0, colon), Integer.parseInt(addr.substring(colon + 1)),
        Path.of(doc), framing);
    c.readTimeoutMillis = readTimeoutMillis;
    int rc;
    try {
      rc = switch (scenario) {
        case "sign-on-required" -> c.runSignOnRequired();
        case "in-flight" -> c.runInFlight();
        default -> c.run();
      };
    } catch (Exception e) {
      // A jPOS or I/O exception names fields and lengths, never their values.
      System.out.println("FAIL: client stopped at \"" + c.lastStep + "\": " + e.getClass().getSimpleName() + ": "
          + e.getMessage());
      rc = 1;
    }
    System.exit(rc);
  }

  /**
   * Against a gateway whose ATM network (100001) has require_sign_on: a 0100
   * or a key change before sign-on and after sign-off is answered 91, an echo
   * and an 0420 are taken either way, a 0100 between them is served.
   */
  int runSignOnRequired() throws Exception {
    BaseChannel ch = Wire.connect(framing, host, port, packager, 15000);
    try {
      int i = freshIndex();
      String pan = DevCards.pan(RANGE_A, i);
      String pin = DevCards.initialPin(pan);
      ISOMsg before = pinChange(ATM, nextTerminal("JR"), pan, PinBlocks.format0(atmKey, pin, pan),
          PinBlocks.format0(atmKey, newPin(pan, pin), pan), "0001000000000000");
      exchange(ch, "PIN change before sign-on (not_signed_on)", before, "91");
      ISOMsg kc = keyChange(KeyBlocks.wrapB(ATM_ZMK, ATM_ZPK, 'B'));
      kc.set(32, ATM);
      exchange(ch, "key change before sign-on (not_signed_on)", kc, "91");
      exchange(ch, "echo before sign-on", netMgmt("301", null), "00");
      exchange(ch, "0420 before sign-on", reversal(before), "00");
      exchange(ch, "sign-on", netMgmt("001", ATM), "00");
      atmChange(ch, "PIN change after sign-on", pan, pin, newPin(pan, pin), "0001000000000000", "00");
      exchange(ch, "sign-off", netMgmt("002", ATM), "00");
      int j = freshIndex();
      String panJ = DevCards.pan(RANGE_B, j);
      String pinJ = DevCards.initialPin(panJ);
      atmChange(ch, "PIN change after sign-off (not_signed_on)", panJ, pinJ, newPin(panJ, pinJ), "0001000000000000",
          "91");
      exchange(ch, "echo after sign-off", netMgmt("301", null), "00");
    } finally {
      ch.disconnect();
    }
    return summary();
  }

  /**
   * Against a gateway whose issuer answers slowly: the retransmission and the
   * 0420 of a request still in flight.
   */
  int runInFlight() throws Exception {
    BaseChannel ch = Wire.connect(framing, host, port, packager, 15000);
    try {
      exchange(ch, "sign-on", netMgmt("001", ATM), "00");
      inFlightRaces(ch);
    } finally {
      ch.disconnect();
    }
    return summary();
  }

  private int summary() {
    System.out.printf("jPOS acquirer client (%s): %d checks, %d mismatches%n", framing, checks, mismatches.size());
    for (String m : mismatches) {
      System.out.println("MISMATCH: " + m);
    }
    return mismatches.isEmpty() ? 0 : 1;
  }

  int run() throws Exception {
    Map<String, byte[]> golden = Wire.goldens(doc);
    goldenRoundTrip(golden);
    docExamples();
    atmNetwork(golden);
    branch();
    sm4Network();
    unknownAcquirer();
    unframeable();
    if (readTimeoutMillis > 0) {
      incompleteFrame();
    }
    return summary();
  }

  // ---- the document's golden messages through this packager ----

  /** Every golden message unpacks with the packager and packs back to the same bytes. */
  private void goldenRoundTrip(Map<String, byte[]> golden) {
    expect("golden messages in the document", golden.size() >= 18, "found " + golden.size() + ", want 18 or more");
    for (Map.Entry<String, byte[]> g : golden.entrySet()) {
      try {
        ISOMsg m = Wire.unpack(packager, g.getValue());
        byte[] again = m.pack();
        expect("golden " + g.getKey() + " round trip", Arrays.equals(again, g.getValue()),
            "packs back to other bytes");
      } catch (ISOException e) {
        expect("golden " + g.getKey() + " unpacks", false, e.getMessage());
      }
    }
  }

  // ---- the ATM network (acquirer 100001, TDES format 0 and 3 under dev-atm-zpk, key index 01) ----

  private void atmNetwork(Map<String, byte[]> golden) throws Exception {
    BaseChannel ch = Wire.connect(framing, host, port, packager, 15000);
    try {
      // Unbound: an echo is answered 00, a key change without DE 32 58 (not_bound), the connection stays open.
      goldenExchange(ch, golden, "0800-echo", "0810-echo");
      ISOMsg r = callRaw(ch, golden.get("0800-key-change"));
      expectAnswer("key change on an unbound connection", r, "0810", "58");
      goldenExchange(ch, golden, "0800-sign-on", "0810-sign-on");
      goldenRequests(ch, golden);

      // PIN change, its retransmission, its reversal.
      int ia = freshIndex();
      String panA = DevCards.pan(RANGE_A, ia);
      String pinA = DevCards.initialPin(panA);
      String newA = newPin(panA, pinA);
      ISOMsg change = pinChange(ATM, nextTerminal("JA"), panA, PinBlocks.format0(ATM_ZPK, pinA, panA),
          PinBlocks.format0(ATM_ZPK, newA, panA), "0001000000000000");
      exchange(ch, "PIN change (format 0)", change, "00");
      exchange(ch, "retransmitted PIN change", change, "00");

      ISOMsg otherRrn = (ISOMsg) change.clone();
      otherRrn.set(37, nextRrn());
      exchange(ch, "retransmission under another DE 37", otherRrn, "00");
      ISOMsg rev = reversal(change);
      exchange(ch, "reversal of the PIN change", rev, "00");
      exchange(ch, "repeated reversal", rev, "00");

      // The reversal undid the change: the initial PIN is current again. This one goes
      // in format 3 under the key the golden key change brings (key index 01, next version).
      goldenExchange(ch, golden, "0800-key-change", "0810-key-change");
      atmKey = ATM_ZPK_NEXT;
      goldenExchange(ch, golden, "0800-key-change-legacy", "0810-key-change-legacy");
      ISOMsg change3 = pinChange(ATM, nextTerminal("JA"), panA, PinBlocks.format3(ATM_ZPK_NEXT, pinA, panA),
          PinBlocks.format3(ATM_ZPK_NEXT, newA, panA), "0301000000000000");
      exchange(ch, "PIN change after its reversal (format 3, new key)", change3, "00");
      // Blocks under the previous key version still translate (rotation grace): back to the first PIN.
      ISOMsg back = pinChange(ATM, nextTerminal("JA"), panA, PinBlocks.format0(ATM_ZPK, newA, panA),
          PinBlocks.format0(ATM_ZPK, pinA, panA), "0001000000000000");
      exchange(ch, "PIN change back (previous key version)", back, "00");

      sameStanTwoCards(ch);

      // Declines and refusals.
      int ib = freshIndex();
      String panB = DevCards.pan(RANGE_B, ib);
      String pinB = DevCards.initialPin(panB);
      String wrong = otherPin(pinB);
      atmChange(ch, "wrong current PIN", panB, wrong, newPin(panB, pinB), "0001000000000000", "55");
      atmChange(ch, "new PIN a step sequence (weak)", panB, pinB, "3456", "0001000000000000", "P6");
      atmChange(ch, "new PIN a run of the PAN (weak)", panB, pinB, panB.substring(6, 10), "0001000000000000",
          "P6");
      atmChange(ch, "new PIN equal to the current one", panB, pinB, pinB, "0001000000000000", "P6");
      String outside = DevCards.pan("40000000", random.nextInt(DevCards.PER_RANGE));
      atmChange(ch, "card of no BIN range (no_route)", outside, "1357", newPin(outside, "1357"), "0001000000000000",
          "14");
      String notHeld = DevCards.pan(RANGE_A, DevCards.PER_RANGE + random.nextInt(1000000));
      atmChange(ch, "card of a range the simulator does not hold", notHeld, "1357", newPin(notHeld, "1357"),
          "0001000000000000", "14");
      // 30 such cards each, over the three ranges: runs again stay inside a card's 10 operations a day.
      String[] ranges = {RANGE_A, RANGE_B, RANGE_C};
      String p998 = DevCards.pan(ranges[random.nextInt(3)], 998 + 1000 * random.nextInt(10));
      String pin998 = DevCards.initialPin(p998);
      atmChange(ch, "simulated card ending in 998", p998, pin998, newPin(p998, pin998), "0001000000000000", "96");
      String p999 = DevCards.pan(ranges[random.nextInt(3)], 999 + 1000 * random.nextInt(10));
      String pin999 = DevCards.initialPin(p999);
      atmChange(ch, "simulated card ending in 999", p999, pin999, newPin(p999, pin999), "0001000000000000", "57");

      int ic = freshIndex();
      String panC = DevCards.pan(RANGE_C, ic);
      String pinC = DevCards.initialPin(panC);
      ISOMsg bad = pinChange(ATM, nextTerminal("JA"), panC, PinBlocks.format0Raw(atmKey, 2, pinC, panC),
          PinBlocks.format0(atmKey, newPin(panC, pinC), panC), "0001000000000000");
      exchange(ch, "PIN block of PIN length 2 (invalid_pin_block)", bad, "30");
      ISOMsg f4 = pinChange(ATM, nextTerminal("JA"), panC, PinBlocks.format4(BRANCH_ZPK, pinC, panC),
          PinBlocks.format4(BRANCH_ZPK, newPin(panC, pinC), panC), "0401000000000000");
      exchange(ch, "format 04 from the ATM network (pin_block_format_not_permitted)", f4, "30");
      atmChange(ch, "key index 02 (unknown_key_index)", panC, pinC, newPin(panC, pinC), "0002000000000000",
          "30");
      atmChange(ch, "DE 53 format 01 (not the ATM network's)", panC, pinC, newPin(panC, pinC), "0101000000000000",
          "30");
      atmChange(ch, "DE 53 format 02 (no such format)", panC, pinC, newPin(panC, pinC), "0201000000000000",
          "30");
      atmChange(ch, "DE 53 positions 5-16 not zeros", panC, pinC, newPin(panC, pinC), "0001000000000001",
          "30");

      ISOMsg unblock = branchOp("720000", ATM, nextTerminal("JA"), panC, null,
          de48("01", "T1042", "02", "IDV-JPOS-0001"));
      exchange(ch, "unblock from the ATM network (operation_not_permitted)", unblock, "58");
      ISOMsg other = pinChange(BRANCH, nextTerminal("JA"), panC, PinBlocks.format4(BRANCH_ZPK, pinC, panC),
          PinBlocks.format4(BRANCH_ZPK, newPin(panC, pinC), panC), "0401000000000000");
      exchange(ch, "DE 32 of another acquirer (acquirer_mismatch)", other, "58");

      int ig = freshIndex();
      String panG = DevCards.pan(RANGE_C, ig);
      formatErrors(ch, panG, DevCards.initialPin(panG));

      limits(ch);

      // Responses may come back in another order than the requests: send three, match on DE 11.
      int ih = freshIndex();
      String panH = DevCards.pan(RANGE_A, ih);
      pipelined(ch, panH, DevCards.initialPin(panH));
      manyEchoes(ch, 100);
      inFlightRaces(ch);

      ISOMsg echo = netMgmt("301", null);
      exchange(ch, "echo test", echo, "00");
      exchange(ch, "sign-on of another acquirer on the bound connection", netMgmt("001", BRANCH), "58");
      exchange(ch, "echo with DE 32 of another acquirer", netMgmt("301", BRANCH), "58");
      String shortPan = DevCards.pan(RANGE_C, freshIndex()).substring(4);
      atmChange(ch, "PAN of 12 digits", shortPan, "1357", newPin(shortPan, "1357"), "0001000000000000", "30");
      de48Forms(ch);
      ISOMsg unknownRev = reversal(pinChange(ATM, nextTerminal("JA"), panC, "0000000000000000", "0000000000000000",
          "0001000000000000"));
      exchange(ch, "reversal naming no request", unknownRev, "00");
      ISOMsg otherAcq = reversal(change);
      otherAcq.set(90, otherAcq.getString(90).substring(0, 20) + "00000100003" + "00000000000");
      exchange(ch, "reversal whose DE 90 names another acquirer", otherAcq, "30");
      ISOMsg otherMti = reversal(change);
      otherMti.set(90, "0200" + otherMti.getString(90).substring(4));
      exchange(ch, "reversal whose DE 90 names an 0200", otherMti, "30");

      ownKeyChanges(ch);

      goldenExchange(ch, golden, "0800-sign-off", "0810-sign-off");
      // require_sign_on is off in the embedded default: a 0100 is served after sign-off.
      int ii = freshIndex();
      String panI = DevCards.pan(RANGE_B, ii);
      String pinI = DevCards.initialPin(panI);
      atmChange(ch, "PIN change after sign-off", panI, pinI, newPin(panI, pinI), "0001000000000000", "00");
    } finally {
      ch.disconnect();
    }
  }

  /**
   * The golden 0100s as the document publishes them, from acquirer 100001: their
   * answers on the embedded default (a PAN no range covers, a format and operations
   * the ATM network may not use); then the golden 0420, naming the first of them,
   * answered as the golden 0430 (nothing to undo is acknowledged all the same).
   */
  private void goldenRequests(BaseChannel ch, Map<String, byte[]> golden) throws Exception {
    String[][] want = {
      {"0100-change-format0", "14"},
      {"0100-change-format4-branch", "30"},
      {"0100-reset-format4", "58"},
      {"0100-unblock", "58"},
    };
    for (String[] w : want) {
      byte[] text = golden.get(w[0]);
      if (text == null) {
        fail("golden " + w[0], "not in the document");
        continue;
      }
      ISOMsg req = Wire.unpack(packager, text);
      ISOMsg r = callRaw(ch, text);
      expectAnswer("golden " + w[0], r, "0110", w[1]);
      expectUse("golden " + w[0], req, r, M_0110, O_0110);
    }
    goldenExchange(ch, golden, "0420-change-reversal", "0430-change-reversal-response");
  }

  /**
   * The limits of the embedded default: a terminal's burst of 5 (then 61), 3 wrong
   * PINs per card an hour (then 75), 10 operations per card a day (then 65).
   */
  private void limits(BaseChannel ch) throws Exception {
    String term = nextTerminal("JL");
    for (int i = 0; i < 6; i++) {
      int idx = freshIndex();
      String pan = DevCards.pan(RANGE_B, idx);
      String pin = DevCards.initialPin(pan);
      ISOMsg m = pinChange(ATM, term, pan, PinBlocks.format0(atmKey, pin, pan),
          PinBlocks.format0(atmKey, newPin(pan, pin), pan), "0001000000000000");
      exchange(ch, "terminal burst, request " + (i + 1), m, i < 5 ? "00" : "61");
    }

    int iw = freshIndex();
    String panW = DevCards.pan(RANGE_A, iw);
    String pinW = DevCards.initialPin(panW);
    // The simulator locks the card at the third wrong PIN in a row (75), and keeps it locked.
    for (int i = 0; i < 3; i++) {
      atmChange(ch, "wrong PIN " + (i + 1) + " of 3", panW, otherPin(pinW), newPin(panW, pinW), "0001000000000000",
          i < 2 ? "55" : "75");
    }
    atmChange(ch, "right PIN on the locked card", panW, pinW, newPin(panW, pinW), "0001000000000000", "75");
    lockedPan = panW;
    lockedPin = pinW;

    int id = freshIndex();
    String panD = DevCards.pan(RANGE_C, id);
    String pin = DevCards.initialPin(panD);
    for (int i = 0; i < 10; i++) {
      String next = newPin(panD, pin);
      atmChange(ch, "operation " + (i + 1) + " of 10 on one card", panD, pin, next, "0001000000000000", "00");
      pin = next;
    }
    atmChange(ch, "operation 11 on one card (card_daily_limit)", panD, pin, newPin(panD, pin), "0001000000000000",
        "65");
  }

  /** The document's own examples: its development cards table, its DE 48 example. */
  private void docExamples() throws Exception {
    String text = Files.readString(doc);
    Matcher m = Pattern.compile("(?m)^\\| (\\d{16}) \\| (\\d{4}) \\|$").matcher(text);
    int rows = 0;
    while (m.find()) {
      rows++;
      String pan = m.group(1);
      String range = pan.startsWith(RANGE_C + "0") && !pan.startsWith(RANGE_A) && !pan.startsWith(RANGE_B) ? RANGE_C
          : pan.substring(0, 8);
      int index = Integer.parseInt(pan.substring(range.length(), 15));
      expect("development card table row " + rows + " (PAN from range and index)",
          DevCards.pan(range, index).equals(pan), "the PAN rule gives another PAN");
      expect("development card table row " + rows + " (initial PIN)", DevCards.initialPin(pan).equals(m.group(2)),
          "the PIN rule gives another PIN");
    }
    expect("development card table", rows >= 6, rows + " rows, want 6");
    String wire = "018" + de48("01", "T1042", "04", "BR017");
    expect("DE 48 example", text.contains("`" + wire + "`"), "the document's wire form differs");

    Matcher k =
        Pattern.compile("(?m)^- new zone PIN key: `([0-9A-F]{32})`").matcher(text);
    Matcher b = Pattern.compile("(?m)^- TR-31 form: `(B[0-9A-Z]+)`$").matcher(text);
    if (!k.find() || !b.find()) {
      expect("DE 123 worked example", false, "not found in the document");
      return;
    }
    expect("DE 123 worked example: its new key is the client's", Arrays.equals(HexFormat.of().parseHex(k.group(1)),
        ATM_ZPK_NEXT), "the document names another key");
    expect("DE 123 worked example: the TR-31 form unwraps under dev-atm-zmk to its key",
        KeyBlocks.carries(b.group(1), ATM_ZMK, ATM_ZPK_NEXT), "MAC or key differs under this TR-31 implementation");
  }

  /**
   * Key changes with TR-31 blocks made here under dev-atm-zmk: of mode E
   * (encrypt only), with a MAC that does not verify, of usage D0, of
   * algorithm A, with a KC or KP block that does not match, with a header
   * length other than DE 123's, for a key index the acquirer does not have:
   * each is answered 30. With matching KC and KP blocks, and without optional
   * blocks, dev-atm-zpk comes back as key index 01's current version, and
   * PIN blocks under it translate again (so the client can run again against
   * the same gateway).
   */
  private void ownKeyChanges(BaseChannel ch) throws Exception {
    exchange(ch, "key change, TR-31 block of mode E", keyChange(KeyBlocks.wrapB(ATM_ZMK, ATM_ZPK, 'E')), "30");
    String block = KeyBlocks.wrapB(ATM_ZMK, ATM_ZPK, 'B');
    char last = block.charAt(block.length() - 1);
    String badMac = block.substring(0, block.length() - 1) + (last == '0' ? '1' : '0');
    exchange(ch, "key change, TR-31 MAC that does not verify", keyChange(badMac), "30");
    String kcv = tdesKcv(ATM_ZPK);
    String wrongKcv = (kcv.charAt(0) == '0' ? "1" : "0") + kcv.substring(1);
    String[][] refused = {
      {"key usage D0", "D0", "T", "B"},
      {"algorithm A for a TDES key", "P0", "A", "B"},
      {"KC block with another check value", "P0", "T", "B", "KC0C00" + wrongKcv},
      {"KP block with another check value", "P0", "T", "B", "KP0C00" + wrongKcv},
    };
    for (String[] f : refused) {
      String b = KeyBlocks.wrapB(ATM_ZMK, ATM_ZPK, f[1], f[2].charAt(0), f[3].charAt(0),
          Arrays.copyOfRange(f, 4, f.length));
      exchange(ch, "key change, TR-31 " + f[0], keyChange(b), "30");
    }
    String lengthOff = "B0095" + block.substring(5);
    exchange(ch, "key change, TR-31 header length not DE 123's", keyChange(lengthOff), "30");
    ISOMsg noIndex = keyChange(block);
    noIndex.unset(53);
    exchange(ch, "key change without DE 53 (index 00, none)", noIndex, "30");
    ISOMsg index2 = keyChange(block);
    index2.set(53, "0002000000000000");
    exchange(ch, "key change for key index 02 (none)", index2, "30");
    String withKc = KeyBlocks.wrapB(ATM_ZMK, ATM_ZPK, "P0", 'T', 'B', "KC0C00" + kcv,
        "KP0C00" + tdesKcv(ATM_ZMK));
    exchange(ch, "key change, TR-31 with KC and KP blocks that match", keyChange(withKc), "00");
    exchange(ch, "key change, TR-31 block of mode B made here", keyChange(block), "00");
    atmKey = ATM_ZPK;
    int i = freshIndex();
    String pan = DevCards.pan(RANGE_A, i);
    String pin = DevCards.initialPin(pan);
    atmChange(ch, "PIN change under the key brought back", pan, pin, newPin(pan, pin), "0001000000000000", "00");
  }

  /** TDES check value: TDES-ECB of eight zero bytes, the first 3 bytes in hex. */
  private static String tdesKcv(byte[] key) throws java.security.GeneralSecurityException {
    byte[] k24 = Arrays.copyOf(key, 24);
    System.arraycopy(key, 0, k24, 16, 8);
    javax.crypto.Cipher c = javax.crypto.Cipher.getInstance("DESede/ECB/NoPadding");
    c.init(javax.crypto.Cipher.ENCRYPT_MODE, new javax.crypto.spec.SecretKeySpec(k24, "DESede"));
    Arrays.fill(k24, (byte) 0);
    return HexFormat.of().withUpperCase().formatHex(c.doFinal(new byte[8]), 0, 3);
  }

  private ISOMsg keyChange(String de123) throws ISOException {
    ISOMsg m = netMgmt("161", null);
    m.set(53, "0001000000000000");
    m.set(123, de123);
    return m;
  }

  /**
   * Two cards under one STAN, DE 7 and terminal are two requests, not a
   * retransmission; an 0420 naming the first but carrying the second card's
   * DE 2 names no request: acknowledged, and the first change stands. PIN
   * blocks in lower-case hex are taken like upper-case ones.
   */
  private void sameStanTwoCards(BaseChannel ch) throws Exception {
    String term = nextTerminal("JD");
    int ix = freshIndex();
    int iy = freshIndex();
    String panX = DevCards.pan(RANGE_B, ix);
    String panY = DevCards.pan(RANGE_C, iy);
    String pinX = DevCards.initialPin(panX);
    String pinY = DevCards.initialPin(panY);
    String newX = newPin(panX, pinX);
    ISOMsg x = pinChange(ATM, term, panX, PinBlocks.format0(atmKey, pinX, panX), PinBlocks.format0(atmKey, newX, panX),
        "0001000000000000");
    ISOMsg y = pinChange(ATM, term, panY, PinBlocks.format0(atmKey, pinY, panY),
        PinBlocks.format0(atmKey, newPin(panY, pinY), panY), "0001000000000000");
    y.set(7, x.getString(7));
    y.set(11, x.getString(11));
    exchange(ch, "first card under a STAN", x, "00");
    exchange(ch, "second card under the same STAN and DE 7", y, "00");
    ISOMsg rev = reversal(x);
    rev.set(2, panY);
    exchange(ch, "0420 naming the first with the second card's DE 2", rev, "00");
    atmChange(ch, "the first card's change stands", panX, newX, newPin(panX, newX), "0001000000000000", "00");

    int iz = freshIndex();
    String panZ = DevCards.pan(RANGE_A, iz);
    String pinZ = DevCards.initialPin(panZ);
    ISOMsg z = pinChange(ATM, nextTerminal("JD"), panZ,
        PinBlocks.format0(atmKey, pinZ, panZ).toLowerCase(java.util.Locale.ROOT),
        PinBlocks.format0(atmKey, newPin(panZ, pinZ), panZ).toLowerCase(java.util.Locale.ROOT), "0001000000000000");
    exchange(ch, "PIN blocks in lower-case hex (taken as well)", z, "00");
  }

  /**
   * DE 48's subfields: an unknown tag and a tag given twice are format
   * errors; tags out of order are read all the same.
   */
  private void de48Forms(BaseChannel ch) throws Exception {
    String[][] forms = {
      {"DE 48 tag 05 (unknown)", "30", "05", "X1"},
      {"DE 48 tag 01 twice", "30", "01", "T1042", "01", "T9999"},
      {"DE 48 tags out of order (04 before 01)", "00", "04", "BR017", "01", "T1042"},
    };
    for (String[] f : forms) {
      String pan = DevCards.pan(RANGE_C, freshIndex());
      String pin = DevCards.initialPin(pan);
      ISOMsg m = pinChange(ATM, nextTerminal("JA"), pan, PinBlocks.format0(atmKey, pin, pan),
          PinBlocks.format0(atmKey, newPin(pan, pin), pan), "0001000000000000");
      m.set(48, de48(Arrays.copyOfRange(f, 2, f.length)));
      exchange(ch, f[0], m, f[1]);
    }
  }

  /** Elements that break the field use, or do not unpack, are answered 30 with what could be read. */
  private void formatErrors(BaseChannel ch, String pan, String pin) throws Exception {
    // Mandatory DE 41 left out: the message unpacks, so every element comes back but 52, 53, 125.
    ISOMsg noTerm = pinChange(ATM, nextTerminal("JA"), pan, PinBlocks.format0(atmKey, pin, pan),
        PinBlocks.format0(atmKey, newPin(pan, pin), pan), "0001000000000000");
    noTerm.unset(41);
    ISOMsg r = call(ch, noTerm, "0100 without DE 41 (format_error)");
    expectAnswer("0100 without DE 41 (format_error)", r, "0110", "30");
    expectFormatEcho("0100 without DE 41 (format_error)", noTerm, r, noTerm.getMaxField());

    // DE 3 with a letter: DE 3 does not unpack, so only DE 2 before it comes back.
    ISOMsg badProc = pinChange(ATM, nextTerminal("JA"), pan, PinBlocks.format0(atmKey, pin, pan),
        PinBlocks.format0(atmKey, newPin(pan, pin), pan), "0001000000000000");
    byte[] wire = badProc.pack();
    String text = new String(wire, StandardCharsets.US_ASCII);
    int at = 4 + bitmapLength(text) + 2 + pan.length(); // MTI, bitmaps, LL + PAN
    expect("DE 3 located in the packed 0100", text.startsWith("700000", at), "layout differs from the document");
    wire[at + 5] = 'X';
    r = callRaw(ch, wire);
    expectAnswer("0100 with a letter in DE 3 (format_error)", r, "0110", "30");
    expectFormatEcho("0100 with a letter in DE 3 (format_error)", badProc, r, 2);

    // An element the document does not list (DE 4, amount) makes a format error; it does not unpack
    // (nothing gives its length), so the elements before it come back.
    ISOMsg de4 = netMgmt("301", null);
    byte[] w = de4.pack();
    String t = new String(w, StandardCharsets.US_ASCII);
    // Set bit 4 in the primary bitmap and insert a 12-digit DE 4 after the bitmaps (no DE 2 or 3 here).
    long bm = Long.parseUnsignedLong(t.substring(4, 20), 16) | (1L << (64 - 4));
    int body = 4 + bitmapLength(t);
    String withDe4 = t.substring(0, 4) + String.format("%016X", bm) + t.substring(20, body) + "000000001000"
        + t.substring(body);
    r = callRaw(ch, withDe4.getBytes(StandardCharsets.US_ASCII));
    expectAnswer("0800 with DE 4 (not in the dialect)", r, "0810", "30");
    expectFormatEcho("0800 with DE 4 (not in the dialect)", de4, r, 3);

    // A response MTI sent to the gateway is answered 0110, echoing what could be read.
    ISOMsg echo = netMgmt("301", null);
    byte[] asResponse = echo.pack();
    asResponse[2] = '1'; // 0800 -> 0810
    r = callRaw(ch, asResponse);
    expectAnswer("an 0810 sent to the gateway", r, "0110", "30");
    expectFormatEcho("an 0810 sent to the gateway", echo, r, 128);
    // An MTI that cannot be read: 0110, nothing to echo.
    byte[] badMti = netMgmt("301", null).pack();
    badMti[2] = 'X';
    r = callRaw(ch, badMti);
    expectAnswer("an MTI with a letter", r, "0110", "30");
    expectFormatEcho("an MTI with a letter", echo, r, 0);
    // An 0420 that does not unpack (a letter in its PAN's length) is answered 0430.
    ISOMsg rev = reversal(pinChange(ATM, nextTerminal("JA"), pan, "0000000000000000", "0000000000000000",
        "0001000000000000"));
    byte[] revWire = rev.pack();
    revWire[4 + bitmapLength(new String(revWire, StandardCharsets.US_ASCII))] = 'A';
    r = callRaw(ch, revWire);
    expectAnswer("an 0420 whose DE 2 length has a letter", r, "0430", "30");
    expectFormatEcho("an 0420 whose DE 2 length has a letter", rev, r, 1);
    // Bitmaps in lower-case hex are taken.
    ISOMsg lowerEcho = netMgmt("301", null);
    String lw = new String(lowerEcho.pack(), StandardCharsets.US_ASCII);
    int bl = 4 + bitmapLength(lw);
    r = callRaw(ch, (lw.substring(0, 4) + lw.substring(4, bl).toLowerCase(java.util.Locale.ROOT) + lw.substring(bl))
        .getBytes(StandardCharsets.US_ASCII));
    expectAnswer("an echo with its bitmaps in lower-case hex", r, "0810", "00");
    expectUse("an echo with its bitmaps in lower-case hex", lowerEcho, r, M_0810, O_0810);
    // Elements the field use forbids: DE 39 in a 0100, DE 52 in an 0420.
    ISOMsg with39 = pinChange(ATM, nextTerminal("JA"), pan, PinBlocks.format0(atmKey, pin, pan),
        PinBlocks.format0(atmKey, newPin(pan, pin), pan), "0001000000000000");
    with39.set(39, "00");
    r = call(ch, with39, "a 0100 carrying DE 39");
    expectAnswer("a 0100 carrying DE 39", r, "0110", "30");
    ISOMsg rev52 = reversal(with39);
    rev52.set(52, with39.getString(52));
    r = call(ch, rev52, "an 0420 carrying DE 52");
    expectAnswer("an 0420 carrying DE 52", r, "0430", "30");
    expectFormatEcho("an 0420 carrying DE 52", rev52, r, 128);
    // A space in a length is refused too.
    ISOMsg sp = pinChange(ATM, nextTerminal("JA"), pan, PinBlocks.format0(atmKey, pin, pan),
        PinBlocks.format0(atmKey, newPin(pan, pin), pan), "0001000000000000");
    byte[] spWire = sp.pack();
    spWire[4 + bitmapLength(new String(spWire, StandardCharsets.US_ASCII))] = ' ';
    r = callRaw(ch, spWire);
    expectAnswer("a 0100 whose DE 2 length starts with a space", r, "0110", "30");
    expectFormatEcho("a 0100 whose DE 2 length starts with a space", sp, r, 1);
    // DE 52 of 15 hex digits: not a block length.
    ISOMsg short52 = pinChange(ATM, nextTerminal("JA"), pan, PinBlocks.format0(atmKey, pin, pan).substring(1),
        PinBlocks.format0(atmKey, newPin(pan, pin), pan), "0001000000000000");
    r = call(ch, short52, "DE 52 of 15 hex digits");
    expectAnswer("DE 52 of 15 hex digits", r, "0110", "30");
    expectFormatEcho("DE 52 of 15 hex digits", short52, r, 128);
  }

  /** 16 hex digits, or 32 when the primary bitmap's bit 1 announces a secondary one. */
  private static int bitmapLength(String text) {
    return (Character.digit(text.charAt(4), 16) & 0x8) != 0 ? 32 : 16;
  }

  private void pipelined(BaseChannel ch, String pan, String pin) throws Exception {
    List<ISOMsg> sent = new ArrayList<>();
    Map<String, String> want = new HashMap<>();
    for (int i = 0; i < 3; i++) {
      ISOMsg m;
      if (i == 1) {
        m = netMgmt("301", null);
        want.put(m.getString(11), "00");
      } else {
        m = pinChange(ATM, nextTerminal("JP"), pan, PinBlocks.format0(atmKey, otherPin(pin), pan),
            PinBlocks.format0(atmKey, newPin(pan, pin), pan), "0001000000000000");
        want.put(m.getString(11), "55");
      }
      sent.add(m);
      ch.send(m);
    }
    Map<String, ISOMsg> byStan = new HashMap<>();
    for (ISOMsg m : sent) {
      byStan.put(m.getString(11), m);
    }
    for (int i = 0; i < sent.size(); i++) {
      ISOMsg r = ch.receive();
      ISOMsg req = byStan.remove(r.getString(11));
      checks++;
      if (req == null) {
        fail("pipelined requests", "an answer whose DE 11 names no request in flight");
        continue;
      }
      if (req.hasField(37) && !req.getString(37).equals(r.getString(37))) {
        fail("pipelined requests", "DE 37 of the answer to STAN " + req.getString(11) + " differs");
      }
      String mti = req.getMTI().equals("0800") ? "0810" : "0110";
      expectAnswer("pipelined " + req.getMTI() + " STAN " + req.getString(11), r, mti, want.get(req.getString(11)));
    }
  }

  /**
   * A 0100 sent twice before its answer (a retransmission of a request in
   * flight) is answered twice with the one answer; a 0420 sent right behind
   * its 0100 either undoes it (0430 00, the first PIN current again) or asks
   * to be sent again (96).
   */
  private void inFlightRaces(BaseChannel ch) throws Exception {
    String pan = DevCards.pan(RANGE_B, freshIndex());
    String pin = DevCards.initialPin(pan);
    String next = newPin(pan, pin);
    ISOMsg m = pinChange(ATM, nextTerminal("JF"), pan, PinBlocks.format0(atmKey, pin, pan),
        PinBlocks.format0(atmKey, next, pan), "0001000000000000");
    ch.send(m);
    ch.send(m);
    for (int i = 0; i < 2; i++) {
      ISOMsg r = ch.receive();
      expectAnswer("retransmission while in flight, answer " + (i + 1), r, "0110", "00");
    }
    atmChange(ch, "the change applied once", pan, next, newPin(pan, next), "0001000000000000", "00");

    String pan2 = DevCards.pan(RANGE_A, freshIndex());
    String pin2 = DevCards.initialPin(pan2);
    ISOMsg c2 = pinChange(ATM, nextTerminal("JF"), pan2, PinBlocks.format0(atmKey, pin2, pan2),
        PinBlocks.format0(atmKey, newPin(pan2, pin2), pan2), "0001000000000000");
    ISOMsg rev = reversal(c2);
    ch.send(c2);
    ch.send(rev);
    String revCode = null;
    for (int i = 0; i < 2; i++) {
      ISOMsg r = ch.receive();
      System.out.printf("%-70s %s %s%n", "0100 and its 0420 in flight together", r.getMTI(), r.getString(39));
      if ("0430".equals(r.getMTI())) {
        revCode = r.getString(39);
      }
    }
    expect("0420 sent behind its 0100", "00".equals(revCode) || "96".equals(revCode), "answered " + revCode);
    if ("00".equals(revCode)) {
      // 0430 00 says the reversal is owed and recorded, not that the issuer
      // has it yet: the gateway's reversal worker sends the advice once the
      // original is answered (one issuer round trip later, 300 ms here).
      Thread.sleep(2000);
      atmChange(ch, "first PIN current after the 0420 taken in flight", pan2, pin2, newPin(pan2, pin2),
          "0001000000000000", "00");
    }
  }

  /** n echoes sent before any answer is read (more than the 64 handled at once): each answered once. */
  private void manyEchoes(BaseChannel ch, int n) throws Exception {
    Set<String> open = new TreeSet<>();
    for (int i = 0; i < n; i++) {
      ISOMsg m = netMgmt("301", null);
      open.add(m.getString(11));
      ch.send(m);
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
      ISOMsg r = ch.receive();
      if (!open.remove(r.getString(11)) || !"0810".equals(r.getMTI()) || !"00".equals(r.getString(39))) {
        bad++;
      }
    }
    expect(n + " pipelined echoes", bad == 0 && open.isEmpty(), bad + " answers not an 0810 00 to an echo in flight");
  }

  // ---- the branch front end (acquirer 200001, AES format 4 under dev-branch-zpk, key index 01) ----

  private void branch() throws Exception {
    BaseChannel ch = Wire.connect(framing, host, port, packager, 15000);
    try {
      ISOMsg on = netMgmt("001", BRANCH);
      exchange(ch, "branch sign-on", on, "00");

      int id = freshIndex();
      String panD = DevCards.pan(RANGE_B, id);
      String pinD = DevCards.initialPin(panD);
      String newD = newPin(panD, pinD);
      ISOMsg change = pinChange(BRANCH, nextTerminal("JB"), panD, PinBlocks.format4(BRANCH_ZPK, pinD, panD),
          PinBlocks.format4(BRANCH_ZPK, newD, panD), "0401000000000000");
      change.set(48, de48("01", "T1042", "04", "BR017"));
      exchange(ch, "branch PIN change (format 4)", change, "00");

      // A wrong PIN, then an unblock clearing the counter, then the right PIN is taken.
      int ie = freshIndex();
      String panE = DevCards.pan(RANGE_A, ie);
      String pinE = DevCards.initialPin(panE);
      branchChange(ch, "branch wrong current PIN", panE, otherPin(pinE), newPin(panE, pinE), "55");
      unblockThenChange(ch, "branch card after a wrong PIN", panE, pinE, "IDV-JPOS-000731");
      if (lockedPan != null) {
        // Two 55s and a 75 stay under the gateway's 3 answers 55 an hour: the unblock frees the card.
        unblockThenChange(ch, "card locked at the ATM", lockedPan, lockedPin, "IDV-JPOS-000734");
      }

      int iff = freshIndex();
      String panF = DevCards.pan(RANGE_C, iff);
      String pinF = DevCards.initialPin(panF);
      ISOMsg reset = branchOp("710000", BRANCH, nextTerminal("JB"), panF,
          PinBlocks.format4(BRANCH_ZPK, newPin(panF, pinF), panF),
          de48("01", "T1042", "02", "IDV-JPOS-000732", "03", "S0007", "04", "BR017"));
      exchange(ch, "PIN reset", reset, "00");
      ISOMsg undo = reversal(reset);
      exchange(ch, "reversal of the PIN reset", undo, "00");
      branchChange(ch, "PIN change with the PIN before the reversed reset", panF, pinF, newPin(panF, pinF), "00");

      ISOMsg noIdv = branchOp("710000", BRANCH, nextTerminal("JB"), panF,
          PinBlocks.format4(BRANCH_ZPK, newPin(panF, pinF), panF), de48("01", "T1042"));
      exchange(ch, "PIN reset without DE 48.02 (format_error)", noIdv, "30");
      int ie2 = freshIndex();
      String panE2 = DevCards.pan(RANGE_B, ie2);
      ISOMsg emptyTeller = branchOp("710000", BRANCH, nextTerminal("JB"), panE2,
          PinBlocks.format4(BRANCH_ZPK, newPin(panE2, DevCards.initialPin(panE2)), panE2),
          de48("01", "", "02", "IDV-JPOS-000735"));
      exchange(ch, "PIN reset with an empty DE 48.01", emptyTeller, "30");
      ISOMsg emptyIdv = branchOp("720000", BRANCH, nextTerminal("JB"), panE2, null,
          de48("01", "T1042", "02", ""));
      exchange(ch, "unblock with an empty DE 48.02", emptyIdv, "30");
      ISOMsg digits = branchOp("720000", BRANCH, nextTerminal("JB"), panF, null,
          de48("01", "T123456789012", "02", "IDV-JPOS-000733"));
      exchange(ch, "teller id with a run of 12 digits", digits, "30");
      ISOMsg f0 = pinChange(BRANCH, nextTerminal("JB"), panF, PinBlocks.format0(atmKey, pinF, panF),
          PinBlocks.format0(atmKey, newPin(panF, pinF), panF), "0001000000000000");
      exchange(ch, "format 00 from the branch (pin_block_format_not_permitted)", f0, "30");
      ISOMsg kc = netMgmt("161", null);
      kc.set(53, "0401000000000000");
      kc.set(123, "B0096P0TB00N00003DFE914CFDB9F1E36887101A8EC87994B0CF31BD006ACF164D5592B21E808BE0DAAFBF1E4D6CBACF");
      exchange(ch, "branch key change (no ZMK)", kc, "30");
    } finally {
      ch.disconnect();
    }
  }

  private void branchChange(BaseChannel ch, String step, String pan, String oldPin, String newPin, String rc)
      throws Exception {
    ISOMsg m = pinChange(BRANCH, nextTerminal("JB"), pan, PinBlocks.format4(BRANCH_ZPK, oldPin, pan),
        PinBlocks.format4(BRANCH_ZPK, newPin, pan), "0401000000000000");
    exchange(ch, step, m, rc);
  }

  /** An unblock at the branch (teller and identity check in DE 48), then a PIN change with the right PIN. */
  private void unblockThenChange(BaseChannel ch, String what, String pan, String pin, String idv) throws Exception {
    ISOMsg ub = branchOp("720000", BRANCH, nextTerminal("JB"), pan, null, de48("01", "T1042", "02", idv));
    exchange(ch, "unblock of the " + what, ub, "00");
    branchChange(ch, "PIN change of the " + what + ", unblocked", pan, pin, newPin(pan, pin), "00");
  }

  /**
   * The SM4 ATM network (100003, pin_algorithm sm4): SM4-0 blocks as DE 53
   * format 00 and SM4-4 as 04, 16 bytes each, under dev-sm4-atm-zpk; format 03
   * is refused, and so is an 8-byte block.
   */
  private void sm4Network() throws Exception {
    BaseChannel ch = Wire.connect(framing, host, port, packager, 15000);
    try {
      exchange(ch, "SM4 network sign-on", netMgmt("001", SM4_ATM), "00");
      String[] ranges = {RANGE_A, RANGE_C};
      for (String range : ranges) {
        int i = freshIndex();
        String pan = DevCards.pan(range, i);
        String pin = DevCards.initialPin(pan);
        String next = newPin(pan, pin);
        sm4Change(ch, "SM4-0 PIN change, range " + range, SM4_ATM_ZPK, pan, pin, next, "00");
        exchange(ch, "SM4-4 PIN change back, range " + range, pinChange(SM4_ATM, nextTerminal("JS"), pan,
            PinBlocks.format4SM4(SM4_ATM_ZPK, next, pan), PinBlocks.format4SM4(SM4_ATM_ZPK, pin, pan),
            "0401000000000000"), "00");
      }
      // Cards 5000-5999 of 621700 belong to the SM4 issuer.
      int i;
      do {
        i = 5000 + random.nextInt(998);
      } while (!usedIndex.add(i));
      String pan = DevCards.pan(RANGE_C, i);
      String pin = DevCards.initialPin(pan);
      sm4Change(ch, "SM4-0 PIN change of a card of the SM4 issuer", SM4_ATM_ZPK, pan, pin, newPin(pan, pin), "00");
      int j = freshIndex();
      String panJ = DevCards.pan(RANGE_B, j);
      String pinJ = DevCards.initialPin(panJ);
      exchange(ch, "8-byte format 0 block from the SM4 network", pinChange(SM4_ATM, nextTerminal("JS"), panJ,
          PinBlocks.format0(SM4_ATM_ZPK, pinJ, panJ), PinBlocks.format0(SM4_ATM_ZPK, newPin(panJ, pinJ), panJ),
          "0001000000000000"), "30");
      exchange(ch, "format 03 from the SM4 network", pinChange(SM4_ATM, nextTerminal("JS"), panJ,
          PinBlocks.format3(SM4_ATM_ZPK, pinJ, panJ), PinBlocks.format3(SM4_ATM_ZPK, newPin(panJ, pinJ), panJ),
          "0301000000000000"), "30");
      sm4KeyChanges(ch);
    } finally {
      ch.disconnect();
    }
  }

  /**
   * SM4 key changes (DE 123 "key SM4-ECB under the SM4 ZMK / check value"): the
   * document's published example, whose key this client deciphers under
   * dev-sm4-atm-zmk and checks against the example's check value, then a PIN
   * change under it; a wrong check value (30); then dev-sm4-atm-zpk back.
   */
  private void sm4KeyChanges(BaseChannel ch) throws Exception {
    String text = Files.readString(doc);
    Matcher m = Pattern.compile("`([0-9A-F]{32})/([0-9A-F]{16})`").matcher(text);
    if (!m.find()) {
      expect("SM4 key change example", false, "not found in the document");
      return;
    }
    byte[] key = Sm4.decrypt(SM4_ATM_ZMK, HexFormat.of().parseHex(m.group(1)));
    try {
      expect("SM4 key change example: check value of the key it carries", Sm4.kcv(key).equals(m.group(2)),
          "SM4(K, 0) differs from the example's check value");
      exchange(ch, "SM4 key change, the document's example", keyChange(m.group(1) + "/" + m.group(2)), "00");
      int i = freshIndex();
      String pan = DevCards.pan(RANGE_B, i);
      String pin = DevCards.initialPin(pan);
      sm4Change(ch, "SM4-0 PIN change under the example's key", key, pan, pin, newPin(pan, pin), "00");
    } finally {
      Arrays.fill(key, (byte) 0);
    }
    String back = HexFormat.of().withUpperCase().formatHex(Sm4.encrypt(SM4_ATM_ZMK, SM4_ATM_ZPK));
    String kcv = Sm4.kcv(SM4_ATM_ZPK);
    String wrongKcv = (kcv.charAt(0) == '0' ? "1" : "0") + kcv.substring(1);
    exchange(ch, "SM4 key change, check value that does not match", keyChange(back + "/" + wrongKcv), "30");
    exchange(ch, "SM4 key change, dev-sm4-atm-zpk back", keyChange(back + "/" + kcv), "00");
    int j = freshIndex();
    String pan = DevCards.pan(RANGE_A, j);
    String pin = DevCards.initialPin(pan);
    sm4Change(ch, "SM4-0 PIN change under dev-sm4-atm-zpk again", SM4_ATM_ZPK, pan, pin, newPin(pan, pin), "00");
  }

  /** An SM4-0 PIN change from the SM4 network under key (key index 01). */
  private void sm4Change(BaseChannel ch, String step, byte[] key, String pan, String oldPin, String newPin, String rc)
      throws Exception {
    exchange(ch, step, pinChange(SM4_ATM, nextTerminal("JS"), pan, PinBlocks.format0SM4(key, oldPin, pan),
        PinBlocks.format0SM4(key, newPin, pan), "0001000000000000"), rc);
  }

  /** A sign-on naming no configured acquirer is answered 58 and the connection is closed. */
  private void unknownAcquirer() throws Exception {
    int i = freshIndex();
    String pan = DevCards.pan(RANGE_A, i);
    String pin = DevCards.initialPin(pan);
    ISOMsg[] first = {
      netMgmt("001", UNKNOWN_ACQUIRER),
      netMgmt("301", UNKNOWN_ACQUIRER),
      pinChange(UNKNOWN_ACQUIRER, nextTerminal("JU"), pan, PinBlocks.format0(ATM_ZPK, pin, pan),
          PinBlocks.format0(ATM_ZPK, newPin(pan, pin), pan), "0001000000000000"),
    };
    for (ISOMsg m : first) {
      BaseChannel ch = Wire.connect(framing, host, port, packager, 15000);
      try {
        String step = m.getMTI() + (m.hasField(70) ? " NMI " + m.getString(70) : "") + " of an unknown acquirer";
        exchange(ch, step, m, "58");
        expectClosed(ch, "connection after " + step);
      } finally {
        ch.disconnect();
      }
    }
  }

  /** A frame begun and not finished within the read timeout cuts the connection. */
  private void incompleteFrame() throws Exception {
    BaseChannel ch = Wire.connect(framing, host, port, packager, 3 * readTimeoutMillis + 2000);
    try {
      byte[] text = netMgmt("301", null).pack();
      ch.getSocket().getOutputStream().write(Wire.header(framing, text.length));
      ch.getSocket().getOutputStream().write(text, 0, text.length / 2);
      ch.getSocket().getOutputStream().flush();
      long start = System.nanoTime();
      expectClosed(ch, "connection after half a frame");
      long took = (System.nanoTime() - start) / 1_000_000;
      expect("half a frame cut after the read timeout", took >= readTimeoutMillis * 9L / 10,
          "cut after " + took + " ms, before the read timeout of " + readTimeoutMillis + " ms");
    } finally {
      ch.disconnect();
    }
  }

  /**
   * A zero length, one above the maximum (8192 by default) or, in ascii4, a
   * non-digit cannot be resynchronised: the connection is closed, unanswered.
   */
  private void unframeable() throws Exception {
    byte[][] headers = {
      Wire.header(framing, 0), Wire.header(framing, 8193), "00A4".getBytes(StandardCharsets.US_ASCII),
    };
    String[] what = {"a zero-length frame", "a frame of 8193 bytes", "a length header with a letter"};
    if (!framing.equals("ascii4")) {
      headers = Arrays.copyOf(headers, 2);
    }
    for (int i = 0; i < headers.length; i++) {
      BaseChannel ch = Wire.connect(framing, host, port, packager, 15000);
      try {
        ch.getSocket().getOutputStream().write(headers[i]);
        ch.getSocket().getOutputStream().write(new byte[16]);
        ch.getSocket().getOutputStream().flush();
        expectClosed(ch, "connection after " + what[i]);
      } finally {
        ch.disconnect();
      }
    }
  }

  // ---- messages ----

  private String now(DateTimeFormatter f) {
    return ZonedDateTime.now(ZoneOffset.UTC).format(f);
  }

  private String nextStan() {
    stan = stan % 999999 + 1;
    return String.format("%06d", stan);
  }

  private String nextRrn() {
    rrn++;
    return String.format("JP%010d", rrn);
  }

  /** A terminal id of its own per request: terminal rate limits (burst 5) stay out of the way. */
  private String nextTerminal(String prefix) {
    terminal++;
    return prefix + String.format("%06d", terminal % 1000000);
  }

  private ISOMsg netMgmt(String nmi, String acquirer) throws ISOException {
    ISOMsg m = new ISOMsg("0800");
    m.setPackager(packager);
    m.set(7, now(DE7));
    m.set(11, nextStan());
    if (acquirer != null) {
      m.set(32, acquirer);
    }
    m.set(70, nmi);
    return m;
  }

  private ISOMsg base(String proc, String acquirer, String term, String pan) throws ISOException {
    ISOMsg m = new ISOMsg("0100");
    m.setPackager(packager);
    m.set(2, pan);
    m.set(3, proc);
    m.set(7, now(DE7));
    m.set(11, nextStan());
    m.set(12, now(DE12));
    m.set(13, now(DE13));
    m.set(32, acquirer);
    m.set(37, nextRrn());
    m.set(41, term);
    m.set(42, "JPOS SITE 0001 ");
    return m;
  }

  private ISOMsg pinChange(String acquirer, String term, String pan, String oldBlock, String newBlock, String de53)
      throws ISOException {
    ISOMsg m = base("700000", acquirer, term, pan);
    m.set(52, oldBlock);
    m.set(53, de53);
    m.set(125, newBlock);
    return m;
  }

  /** A reset (710000, new block in DE 125, DE 53) or an unblock (720000, no block); de48 as on the wire. */
  private ISOMsg branchOp(String proc, String acquirer, String term, String pan, String newBlock, String de48)
      throws ISOException {
    ISOMsg m = base(proc, acquirer, term, pan);
    m.set(48, de48);
    if (newBlock != null) {
      m.set(53, "0401000000000000");
      m.set(125, newBlock);
    }
    return m;
  }

  /** DE 48 as its subfields go on the wire: tag, 2-digit length, value, in the order given. */
  private static String de48(String... tagValue) {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i + 1 < tagValue.length; i += 2) {
      b.append(tagValue[i]).append(String.format("%02d", tagValue[i + 1].length())).append(tagValue[i + 1]);
    }
    return b.toString();
  }

  /** The 0420 of a 0100: same card, terminal, RRN; DE 90 names its MTI, STAN, DE 7 and DE 32. */
  private ISOMsg reversal(ISOMsg orig) throws ISOException {
    ISOMsg m = new ISOMsg("0420");
    m.setPackager(packager);
    for (int f : new int[] {2, 3, 12, 13, 32, 37, 41, 42}) {
      m.set(f, orig.getString(f));
    }
    m.set(7, now(DE7));
    m.set(11, nextStan());
    m.set(90, orig.getMTI() + orig.getString(11) + orig.getString(7)
        + String.format("%11s", orig.getString(32)).replace(' ', '0') + "00000000000");
    return m;
  }

  private void atmChange(BaseChannel ch, String step, String pan, String oldPin, String newPin, String de53,
      String rc) throws Exception {
    ISOMsg m = pinChange(ATM, nextTerminal("JA"), pan, PinBlocks.format0(atmKey, oldPin, pan),
        PinBlocks.format0(atmKey, newPin, pan), de53);
    exchange(ch, step, m, rc);
  }

  /** A new PIN the weak-PIN rules take, other than the current one. */
  private String newPin(String pan, String current) {
    while (true) {
      String p = String.format("%04d", random.nextInt(10000));
      if (!DevCards.weak(pan, current, p)) {
        return p;
      }
    }
  }

  private String otherPin(String pin) {
    return String.format("%04d", (Integer.parseInt(pin) + 1 + random.nextInt(9998)) % 10000);
  }

  /** A card index not used yet in this run, and not one of the 998/999 cards. */
  private int freshIndex() {
    while (true) {
      int i = random.nextInt(DevCards.PER_RANGE);
      if (!DevCards.special(i) && usedIndex.add(i)) {
        return i;
      }
    }
  }

  // ---- exchanges and checks ----

  /**
   * Sends req and checks its answer as the document states: the response MTI,
   * DE 39 rc, and the field use of that response (each mandatory element
   * there and echoed unchanged, nothing the column forbids).
   */
  private ISOMsg exchange(BaseChannel ch, String step, ISOMsg req, String rc) throws IOException, ISOException {
    ISOMsg r = call(ch, req, step);
    String mti = switch (req.getMTI()) {
      case "0100" -> "0110";
      case "0420" -> "0430";
      default -> "0810";
    };
    expectAnswer(step, r, mti, rc);
    switch (mti) {
      case "0110" -> expectUse(step, req, r, M_0110, O_0110);
      case "0430" -> expectUse(step, req, r, M_0430, O_0430);
      default -> expectUse(step, req, r, M_0810, "161".equals(req.getString(70)) ? O_0810_161 : O_0810);
    }
    return r;
  }

  private ISOMsg call(BaseChannel ch, ISOMsg req, String step) throws IOException, ISOException {
    lastStep = step;
    ch.send(req);
    ISOMsg r = ch.receive();
    checks++;
    if (!req.getString(11).equals(r.getString(11))) {
      fail(step, "DE 11 of the answer is " + r.getString(11) + ", want the request's " + req.getString(11));
    }
    return r;
  }

  private ISOMsg callRaw(BaseChannel ch, byte[] text) throws IOException, ISOException {
    lastStep = "raw message after " + lastStep;
    // BaseChannel.send(byte[]) writes the bytes as they are: the length header goes in front here.
    byte[] h = Wire.header(framing, text.length);
    byte[] frame = Arrays.copyOf(h, h.length + text.length);
    System.arraycopy(text, 0, frame, h.length, text.length);
    ch.send(frame);
    return ch.receive();
  }

  /** Sends the golden request as it is in the document and compares the answer with the golden answer. */
  private void goldenExchange(BaseChannel ch, Map<String, byte[]> golden, String req, String resp) throws Exception {
    byte[] want = golden.get(resp);
    if (golden.get(req) == null || want == null) {
      fail("golden " + req, "not in the document");
      return;
    }
    ISOMsg r = callRaw(ch, golden.get(req));
    lastStep = "golden " + req;
    checks++;
    System.out.printf("%-70s %s %s%n", "golden " + req, r.getMTI(), r.getString(39));
    byte[] got = r.pack();
    if (!Arrays.equals(got, want)) {
      ISOMsg w = Wire.unpack(packager, want);
      fail("golden " + req, "answer differs from golden " + resp + ": " + differences(w, r));
    }
  }

  /** Which elements differ between two messages (numbers and non-secret values only). */
  private static String differences(ISOMsg want, ISOMsg got) {
    List<String> d = new ArrayList<>();
    int max = Math.max(want.getMaxField(), got.getMaxField());
    for (int f = 0; f <= max; f++) {
      String a = want.getString(f);
      String b = got.getString(f);
      if (a == null ? b != null : !a.equals(b)) {
        d.add("DE " + f + " " + shown(f, b) + " (want " + shown(f, a) + ")");
      }
    }
    return d.isEmpty() ? "same elements, other bytes" : String.join(", ", d);
  }

  private static String shown(int f, String v) {
    if (v == null) {
      return "absent";
    }
    return Set.of(2, 48, 52, 53, 123, 125).contains(f) ? "present" : v;
  }

  private void expectAnswer(String step, ISOMsg r, String mti, String rc) throws ISOException {
    checks++;
    System.out.printf("%-70s %s %s%n", step, r.getMTI(), r.getString(39));
    if (!mti.equals(r.getMTI())) {
      fail(step, "MTI " + r.getMTI() + ", want " + mti);
    }
    if (!rc.equals(r.getString(39))) {
      fail(step, "DE 39 " + r.getString(39) + ", want " + rc);
    }
  }

  /** The answer holds each M element, echoed unchanged, O ones only echoed, nothing else. */
  private void expectUse(String step, ISOMsg req, ISOMsg r, Set<Integer> m, Set<Integer> o) {
    checks++;
    for (int f = 2; f <= Math.max(128, r.getMaxField()); f++) {
      boolean in = r.hasField(f);
      if (m.contains(f) && !in) {
        fail(step, "DE " + f + " missing from the answer");
      } else if (!m.contains(f) && !o.contains(f) && in) {
        fail(step, "DE " + f + " in the answer, which the field use does not allow");
      } else if (in && f != 39 && req.hasField(f) && !req.getString(f).equals(r.getString(f))) {
        fail(step, "DE " + f + " not echoed unchanged");
      } else if (in && f != 39 && !req.hasField(f) && o.contains(f) && f != 100) {
        fail(step, "DE " + f + " in the answer but not in the request");
      }
    }
  }

  /**
   * A format error's answer echoes the request's elements 2..upTo (those that
   * could be read), never 48, 52, 53, 123 or 125, nor DE 12 and 13 in an 0430.
   */
  private void expectFormatEcho(String step, ISOMsg req, ISOMsg r, int upTo) {
    checks++;
    for (int f = 2; f <= Math.max(128, r.getMaxField()); f++) {
      if (f == 39) {
        continue;
      }
      boolean notIn0430 = (f == 12 || f == 13) && "0430".equals(mti(r));
      boolean want = f <= upTo && req.hasField(f) && !NEVER_ECHOED.contains(f) && !notIn0430;
      if (want && !r.hasField(f)) {
        fail(step, "DE " + f + " not echoed");
      } else if (!want && r.hasField(f)) {
        fail(step, "DE " + f + " in the answer, not expected");
      } else if (want && !req.getString(f).equals(r.getString(f))) {
        fail(step, "DE " + f + " not echoed unchanged");
      }
    }
  }

  private static String mti(ISOMsg m) {
    try {
      return m.getMTI();
    } catch (ISOException e) {
      return "";
    }
  }

  private void expectClosed(BaseChannel ch, String step) {
    checks++;
    try {
      ch.receive();
      fail(step, "still open: a message came");
    } catch (EOFException e) {
      // closed by the gateway
    } catch (SocketTimeoutException e) {
      fail(step, "still open after 15 s");
    } catch (IOException | ISOException e) {
      // reset or a short read: closed too
    }
  }

  private void expect(String step, boolean ok, String detail) {
    checks++;
    if (!ok) {
      fail(step, detail);
    }
  }

  private void fail(String step, String detail) {
    mismatches.add(step + ": " + detail);
  }
}
