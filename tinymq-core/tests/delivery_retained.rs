//! [`Delivery::is_retained`]: what a bridge reads to carry a retained
//! publish, and a delete (a retained empty one), to the far side.

use tinymq_core::{Delivery, Message, NamespaceId, Router, TopicLimits, TopicName};

fn delivery(payload: &[u8]) -> std::sync::Arc<Delivery> {
    Delivery::new(Message { topic: "a/b".into(), payload: payload.into(), from: "x".into(), updated_time: 0, ip: None })
}

#[test]
fn a_delivery_is_retained_when_it_was_published_with_retain_and_a_delete_is_too() {
    let mut router: Router<u32> = Router::new();
    let topic = TopicName::new("a/b", &TopicLimits::UNBOUNDED).unwrap();
    let mut receivers: Vec<u32> = Vec::new();

    let live = delivery(b"1");
    let _ = router.publish(NamespaceId::PUBLIC, topic, &live, false, &mut receivers);
    assert!(!live.is_retained());

    let kept = delivery(b"2");
    let _ = router.publish(NamespaceId::PUBLIC, topic, &kept, true, &mut receivers);
    assert!(kept.is_retained());
    assert!(router.value(NamespaceId::PUBLIC, "a/b").is_some());

    // The delete leaves no value to compare against: the flag is what
    // says it was retained.
    let delete = delivery(b"");
    let _ = router.publish(NamespaceId::PUBLIC, topic, &delete, true, &mut receivers);
    assert!(delete.is_retained());
    assert!(router.value(NamespaceId::PUBLIC, "a/b").is_none());
}
