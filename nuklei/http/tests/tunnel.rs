//! The http nukleus driven through its real streams by scripted peers: a `tcp` peer (the
//! network connection) and a `ws` peer (the application an upgrade is routed to), checking
//! how the bytes of an upgraded connection are forwarded within the application's window.

mod support;

use support::Rig;

/// An upgraded connection whose client sent two records' worth (the ring's largest DATA
/// payload, twice) before ws granted any window: all of it waits in http. Returns the rig,
/// the tunnel's stream id towards ws and the record size.
fn two_records_held() -> (Rig, u64, usize) {
    let mut rig = Rig::new(1 << 20);
    let id = rig.upgrade();
    let record = rig.tcp.tx.max_payload() - 64;
    let chunk = vec![0x82u8; record];
    rig.client(&chunk);
    rig.client(&chunk);
    assert_eq!(rig.tunnelled(id), 0, "no window from ws yet");
    (rig, id, record)
}

/// Client bytes held while ws's window was short go out in as many DATA frames as they need
/// once the window opens, not one frame's worth: with nothing more coming from the client
/// (a pipelining client waiting for replies), a remainder left in http's buffer would wait
/// for a WINDOW that ws only sends once half its window was consumed, which a single
/// frame's worth (the ring's largest record) may not reach — and the connection stalled.
#[test]
fn buffered_tunnel_bytes_beyond_one_frame_are_all_forwarded_when_the_window_opens() {
    let (mut rig, id, record) = two_records_held();
    // ws opens a window larger than everything buffered (more than one record).
    rig.ws_window(id, 0, 1 << 20);
    assert_eq!(rig.tunnelled(id), 2 * record);
}

/// Credit still bounds what is forwarded: the rest waits for the next WINDOW.
#[test]
fn buffered_tunnel_bytes_beyond_the_window_wait_for_the_next_window() {
    let (mut rig, id, record) = two_records_held();
    let window = record as u32 + 1000;
    rig.ws_window(id, 0, window);
    assert_eq!(rig.tunnelled(id), window as usize);
    rig.ws_window(id, window as u64, window);
    assert_eq!(rig.tunnelled(id), 2 * record - window as usize);
}
